"""The registry's policy: a clock alert is raised once per crossing and resolved once under the
recovery level; device times are corrected only when the offset is known, beyond the tolerance
and the source is not trusted, and the correction is recorded on the FHIR element."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices.clock import (
    CORRECTION_EXTENSION,
    ClockRegistry,
    ClockSettings,
    correct_element,
    record_correction,
)

START = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def _send(registry: ClockRegistry, source: str, offsets: list[float]) -> list[str]:
    """One message a minute from `source`, its clock `offset` ahead; the alert events seen."""
    events = []
    for minute, offset in enumerate(offsets):
        received = START + timedelta(minutes=minute, seconds=0.4)
        device = (received + timedelta(seconds=offset - 0.4)).replace(microsecond=0)
        event = registry.observe(source, device, received)
        if event is not None:
            events.append(f"{event.event}:{event.key}")
    return events


def test_an_alert_is_raised_once_per_crossing_and_resolved_once() -> None:
    registry = ClockRegistry(ClockSettings(alert_threshold_s=30, min_samples=3, bucket_s=60))
    # Good, then set 45 s fast (a step), then hovering about the threshold, then fixed.
    offsets = [0.0] * 10 + [45.0] * 8 + [29.0, 31.0, 29.0, 31.0] + [0.0] * 8
    events = _send(registry, "monitor-oru:BSM/ED", offsets)
    assert events == [
        "raised:clock/monitor-oru:BSM/ED/1/raised",
        "resolved:clock/monitor-oru:BSM/ED/1/resolved",
    ]
    source = registry.get("monitor-oru:BSM/ED")
    assert source is not None and source.status == "ok" and not source.alerting


def test_too_few_messages_is_unknown_and_raises_nothing() -> None:
    registry = ClockRegistry(ClockSettings(alert_threshold_s=30, min_samples=5))
    assert _send(registry, "ecg", [300.0] * 4) == []
    source = registry.get("ecg")
    assert source is not None and source.status == "unknown"
    assert not registry.correct("ecg", START).applied


def test_a_device_time_is_corrected_and_the_correction_recorded() -> None:
    registry = ClockRegistry(ClockSettings(min_samples=3, tolerance_s=2))
    _send(registry, "monitor-oru:BSM/ED", [300.0] * 6)
    device_time = datetime(2026, 11, 26, 8, 10, 0, tzinfo=UTC)

    corrected = registry.correct("monitor-oru:BSM/ED", device_time)

    assert corrected.applied and corrected.offset_s == 300.0
    assert corrected.true_time == device_time - timedelta(seconds=300)
    observation = {"resourceType": "Observation", "effectiveDateTime": "2026-11-26T16:10:00+08:00"}
    record_correction(observation, "effectiveDateTime", corrected)
    assert observation["effectiveDateTime"] == "2026-11-26T08:05:00+00:00"
    (extension,) = observation["_effectiveDateTime"]["extension"]
    assert extension["url"] == CORRECTION_EXTENSION
    parts = {part["url"]: part for part in extension["extension"]}
    assert parts["deviceTime"]["valueDateTime"] == "2026-11-26T08:10:00+00:00"
    assert parts["offset"]["valueQuantity"]["value"] == 300.0
    assert parts["source"]["valueString"] == "monitor-oru:BSM/ED"


def test_an_offset_within_the_tolerance_is_left_alone() -> None:
    registry = ClockRegistry(ClockSettings(min_samples=3, tolerance_s=2))
    _send(registry, "lis-oru", [1.0] * 6)
    corrected = registry.correct("lis-oru", START)
    assert not corrected.applied and corrected.true_time == START
    assert "within the tolerance" in corrected.reason
    resource = {"effectiveDateTime": "2026-11-26T16:00:00+08:00"}
    record_correction(resource, "effectiveDateTime", corrected)
    assert resource == {"effectiveDateTime": "2026-11-26T16:00:00+08:00"}


def test_a_trusted_source_is_never_corrected() -> None:
    registry = ClockRegistry(ClockSettings(min_samples=3, trusted=["uwb"]))
    _send(registry, "uwb:gateway-1", [300.0] * 6)
    corrected = registry.correct("uwb:gateway-1", START)
    assert not corrected.applied and "trusted" in corrected.reason


def test_the_host_ntp_offset_moves_receipt_times_to_true_time() -> None:
    registry = ClockRegistry(ClockSettings(min_samples=3))
    # Host clock 10 s slow: true time is host time + 10 s. A device right on true time...
    registry.host_offset_s = 10.0
    for minute in range(5):
        host_receipt = START + timedelta(minutes=minute, seconds=0.2)
        true_send = host_receipt + timedelta(seconds=10 - 0.2)
        registry.observe("his-adt", true_send.replace(microsecond=0), host_receipt)
    source = registry.get("his-adt")
    # ... is shown right on time, not 10 s ahead of the host.
    assert source is not None and source.estimate.offset_s is not None
    assert abs(source.estimate.offset_s) <= 1.0


def test_an_observation_time_from_a_fast_device_is_corrected_in_place() -> None:
    registry = ClockRegistry(ClockSettings(min_samples=3))
    _send(registry, "monitor-oru:BSM/ED", [60.0] * 6)
    observation = {"resourceType": "Observation", "effectiveDateTime": "2026-11-26T16:10:00+08:00"}

    corrected = correct_element(registry, observation, "effectiveDateTime", "monitor-oru:BSM/ED")

    assert corrected is not None and corrected.applied
    assert observation["effectiveDateTime"] == "2026-11-26T16:09:00+08:00"
    assert "_effectiveDateTime" in observation
    # a date alone is no clock reading
    assert correct_element(registry, {"d": "2026-11-26"}, "d", "monitor-oru:BSM/ED") is None
