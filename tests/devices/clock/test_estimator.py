"""The offset estimator: delays only ever add, so the estimate converges on the true offset;
a drifting clock shows its drift; a clock that is set is followed after a few buckets."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from devices.clock import EstimatorSettings, add_sample, estimate
from devices.clock.estimator import Bucket

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
SETTINGS = EstimatorSettings(bucket_s=60)


def _stamp(true_time: datetime, offset_s: float) -> datetime:
    """What a device whose clock is `offset_s` ahead writes into MSH-7: whole seconds."""
    device = true_time + timedelta(seconds=offset_s)
    return device.replace(microsecond=0)


def _feed(samples: list[tuple[datetime, datetime]]) -> list[Bucket]:
    buckets: list[Bucket] = []
    for device_time, received_at in samples:
        buckets = add_sample(buckets, device_time, received_at, SETTINGS)
    return buckets


@settings(max_examples=60, deadline=None)
@given(
    offset_s=st.floats(min_value=-3600, max_value=3600),
    mean_delay_s=st.floats(min_value=0.05, max_value=5.0),
    seed=st.integers(0, 2**32 - 1),
)
# Three late messages in a row (exponential delays, mean 5 s) once passed for a clock set back.
@example(offset_s=0.0, mean_delay_s=5.0, seed=805907)
def test_positive_random_delays_converge_on_the_true_offset(
    offset_s: float, mean_delay_s: float, seed: int
) -> None:
    rng = random.Random(seed)
    samples = []
    for i in range(600):  # ten hours, one message a minute
        sent = START + timedelta(seconds=60 * i + rng.uniform(0, 59))
        delay = rng.expovariate(1 / mean_delay_s)
        samples.append((_stamp(sent, offset_s), sent + timedelta(seconds=delay)))
    found = estimate(_feed(samples), SETTINGS)
    assert found.offset_s is not None
    # Whole-second timestamps: the truth is within the quantum plus a fraction of the delay.
    assert abs(found.offset_s - offset_s) <= 1.0 + mean_delay_s / 2
    assert found.drift_ppm is not None and abs(found.drift_ppm) < 100


@settings(max_examples=40, deadline=None)
@given(
    drift_ppm=st.floats(min_value=-2000, max_value=2000).filter(lambda d: abs(d) >= 200),
    offset_s=st.floats(min_value=-60, max_value=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_constant_drift_is_detected(drift_ppm: float, offset_s: float, seed: int) -> None:
    rng = random.Random(seed)
    samples = []
    for i in range(24 * 30):  # a day, a message every two minutes
        sent = START + timedelta(seconds=120 * i + rng.uniform(0, 119))
        elapsed = (sent - START).total_seconds()
        device_offset = offset_s + drift_ppm * 1e-6 * elapsed
        delay = rng.expovariate(1 / 0.5)
        samples.append((_stamp(sent, device_offset), sent + timedelta(seconds=delay)))
    found = estimate(_feed(samples), SETTINGS)
    assert found.drift_ppm is not None
    # 200 ppm is 17 s a day; seconds-only stamps blur it by a few ppm at most.
    assert abs(found.drift_ppm - drift_ppm) <= 0.1 * abs(drift_ppm)
    final = offset_s + drift_ppm * 1e-6 * 86_400
    assert found.offset_s is not None and abs(found.offset_s - final) <= 2.0


def test_a_stray_timestamp_from_the_future_does_not_move_the_estimate() -> None:
    samples = [
        (_stamp(START + timedelta(minutes=i), 10.0), START + timedelta(minutes=i, seconds=0.3))
        for i in range(30)
    ]
    samples[12] = (samples[12][0] + timedelta(hours=2), samples[12][1])
    found = estimate(_feed(samples), SETTINGS)
    assert found.offset_s is not None and abs(found.offset_s - 10.0) <= 1.0


def test_a_clock_that_is_set_is_followed_after_a_few_buckets() -> None:
    before = [
        (_stamp(START + timedelta(minutes=i), 300.0), START + timedelta(minutes=i, seconds=0.2))
        for i in range(60)
    ]
    after = [
        (_stamp(START + timedelta(minutes=i), 0.0), START + timedelta(minutes=i, seconds=0.2))
        for i in range(60, 64)
    ]
    found = estimate(_feed(before + after), SETTINGS)
    assert found.offset_s is not None and abs(found.offset_s) <= 1.0


def test_no_samples_no_offset() -> None:
    found = estimate([], SETTINGS)
    assert found.offset_s is None and found.drift_ppm is None and found.buckets == 0
