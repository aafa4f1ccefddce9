"""The clock offset estimator: a sender's offset and drift from (device time, receipt time) pairs.

A sample is `y = device_time - received_at` (true time). The sender stamped the message at true
time t as `t + offset`; it arrived at `t + delay` with `delay >= 0` (network, queues, batching),
so `y = offset - delay <= offset`: every sample is a lower bound of the offset, and the least
delayed sample is the best one. As NTP does with its minimum-delay filter, the samples are
grouped into buckets of `bucket_s` seconds and only each bucket's highest `y` is kept. A line is
then fitted through the bucket maxima with the Theil-Sen estimator (median of pairwise slopes:
a few bad buckets move it little), whose slope is the drift; the offset now is that line at the
newest bucket, lifted to the upper quartile of the residuals, since they are all lower bounds.

HL7 MSH-7 carries whole seconds, so an estimate is good to about a second, no better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

__all__ = [
    "Bucket",
    "Estimate",
    "EstimatorSettings",
    "add_sample",
    "estimate",
    "trim",
    "trim_and_estimate",
]

QUANTUM_S = 1.0  # the resolution of HL7 DTM timestamps as most senders fill them


@dataclass(frozen=True, slots=True)
class EstimatorSettings:
    """How the samples are grouped and how much history the estimate looks at."""

    bucket_s: float = 60.0  # one bucket per this many seconds of receipt time
    window_s: float = 7 * 86_400.0  # buckets older than this (before the newest) are dropped
    max_buckets: int = 600  # and at most this many are kept
    step_s: float = 5.0  # at least this far off the line, STEP_CONFIRM buckets in a row: a step
    drift_min_span_s: float = 3600.0  # drift is estimated over at least this much time


STEP_CONFIRM = 3  # buckets in a row on one side of the line that show the clock was set
STEP_NOISE = 3.0  # ... and farther off it than this many times the line's uncertainty
MAX_PAIRS = 20_000  # pairs of buckets the drift's median slope is taken over, at most


@dataclass(frozen=True, slots=True)
class Bucket:
    """The best (least delayed) sample of one stretch of receipt time."""

    start: datetime  # the bucket's start (receipt time, floored to bucket_s)
    at: datetime  # receipt time of the best sample
    best_offset_s: float  # its device time minus receipt time: a lower bound of the offset
    samples: int  # how many samples fell into the bucket


@dataclass(frozen=True, slots=True)
class Estimate:
    """A sender's clock against true time: positive `offset_s` means its clock is ahead."""

    offset_s: float | None  # None without samples
    drift_ppm: float | None  # None until the samples span `drift_min_span_s`
    uncertainty_s: float  # spread of the bucket maxima about the line, plus the 1-s quantum
    buckets: int  # how many buckets the estimate rests on
    at: datetime | None  # the receipt time the offset is for (the newest bucket's)

    def offset_at(self, when: datetime) -> float | None:
        """The offset extrapolated with the drift to another (receipt) time."""
        if self.offset_s is None or self.at is None:
            return None
        drift = (self.drift_ppm or 0.0) * 1e-6
        return self.offset_s + drift * (when - self.at).total_seconds()


def add_sample(
    buckets: Sequence[Bucket],
    device_time: datetime,
    received_at: datetime,
    settings: EstimatorSettings,
) -> list[Bucket]:
    """The buckets with one more sample folded in (both times aware; `received_at` is true
    time, i.e. the host's receipt time corrected by the host's own NTP offset)."""
    y = (device_time - received_at).total_seconds()
    start = _floor(received_at, settings.bucket_s)
    result = list(buckets)
    for index in range(len(result) - 1, -1, -1):
        bucket = result[index]
        if bucket.start == start:
            if y > bucket.best_offset_s:
                bucket = replace(bucket, at=received_at, best_offset_s=y)
            result[index] = replace(bucket, samples=bucket.samples + 1)
            return result
        if bucket.start < start:
            break
    result.append(Bucket(start=start, at=received_at, best_offset_s=y, samples=1))
    result.sort(key=lambda b: b.start)
    return result


def trim(buckets: Sequence[Bucket], settings: EstimatorSettings) -> list[Bucket]:
    """Drop what the estimate no longer looks at: buckets outside the window, and those from
    before a clock step (STEP_CONFIRM buckets in a row off the line, on one side)."""
    if not buckets:
        return []
    newest = buckets[-1].start
    kept = [b for b in buckets if (newest - b.start).total_seconds() <= settings.window_s]
    kept = kept[-settings.max_buckets :]
    if len(kept) >= STEP_CONFIRM + 2:
        before, recent = kept[:-STEP_CONFIRM], kept[-STEP_CONFIRM:]
        line = _fit(before, settings)
        residuals = [b.best_offset_s - line.offset_at(b.at) for b in recent]  # type: ignore[operator]
        # On a link whose delays vary by seconds, a few late messages in a row look like a
        # clock set back: a step must also stand out of the spread the line itself shows.
        threshold = max(settings.step_s, STEP_NOISE * line.uncertainty_s)
        if all(r > threshold for r in residuals) or all(r < -threshold for r in residuals):
            return recent
    return kept


def estimate(buckets: Sequence[Bucket], settings: EstimatorSettings) -> Estimate:
    """The offset (at the newest bucket) and drift the buckets show; see the module text."""
    return trim_and_estimate(buckets, settings)[1]


def trim_and_estimate(
    buckets: Sequence[Bucket], settings: EstimatorSettings
) -> tuple[list[Bucket], Estimate]:
    """`trim`, then the estimate from what is left: the buckets to keep, and the estimate."""
    kept = trim(buckets, settings)
    return kept, _fit(kept, settings)


def _fit(buckets: Sequence[Bucket], settings: EstimatorSettings) -> Estimate:
    if not buckets:
        return Estimate(None, None, QUANTUM_S, 0, None)
    origin = buckets[0].at
    x = np.array([(b.at - origin).total_seconds() for b in buckets])
    y = np.array([b.best_offset_s for b in buckets])
    span = float(x.max() - x.min())
    slope = 0.0
    drift_ppm: float | None = None
    if len(buckets) >= 4 and span >= settings.drift_min_span_s:
        i, j = np.triu_indices(len(x), k=1)
        if len(i) > MAX_PAIRS:
            # A fixed random sample of the pairs: the median barely moves, the cost stays
            # flat for a full window (600 buckets have 179,700 pairs).
            chosen = np.random.default_rng(len(x)).choice(len(i), MAX_PAIRS, replace=False)
            i, j = i[chosen], j[chosen]
        dx = x[j] - x[i]
        usable = dx > 0
        if usable.any():
            slope = float(np.median((y[j] - y[i])[usable] / dx[usable]))
            drift_ppm = slope * 1e6
    residuals = y - slope * x
    # All samples are lower bounds: the upper quartile is nearer the truth than the median,
    # and still ignores the top quarter (a stray timestamp from the future).
    level = float(np.percentile(residuals, 75))
    spread = float(np.percentile(residuals, 75) - np.percentile(residuals, 25))
    newest = buckets[-1].at
    offset = level + slope * (newest - origin).total_seconds()
    return Estimate(
        offset_s=round(offset, 3),
        drift_ppm=None if drift_ppm is None else round(drift_ppm, 1),
        uncertainty_s=round(spread + QUANTUM_S, 3),
        buckets=len(buckets),
        at=newest,
    )


def _floor(when: datetime, step_s: float) -> datetime:
    epoch = when.timestamp()
    floored = epoch - (epoch % step_s)
    return when - timedelta(seconds=epoch - floored)
