"""Correcting a device time into true time, and recording the correction on the FHIR resource.

Policy: a time is corrected only when the source is not trusted, its offset is known (enough
samples) and the offset is beyond the tolerance by more than its uncertainty: a clock a second
or two off is left alone (HL7 carries whole seconds), and a guess is never applied. The offset
used is the estimate extrapolated with the drift to the device time; a device time further
from the estimate than the estimator's window (a recording from last year sent today) is left
alone too, since the clock may have been set in between.

The correction is recorded where the time is: an extension on the corrected element itself
(`_effectiveDateTime.extension`, FHIR's way of annotating a primitive), holding the time as the
device stamped it, the offset taken off, the source and when that offset was estimated. A
reader sees both times, and a registry upload can show the device time if asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from devices.clock.estimator import Estimate

__all__ = ["CORRECTION_EXTENSION", "CorrectedTime", "correct_time", "record_correction"]

CORRECTION_EXTENSION = (
    "https://greenchannel.example.org/fhir/StructureDefinition/device-clock-correction"
)
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True, slots=True)
class CorrectedTime:
    """A device time and what it is in true time; `applied` says whether they differ."""

    source_id: str
    device_time: datetime
    true_time: datetime
    offset_s: float  # taken off the device time (0 when not applied)
    applied: bool
    reason: str  # why (not) corrected, for the record and the operator
    estimated_at: datetime | None = None  # when the offset used was estimated


def correct_time(
    source_id: str,
    device_time: datetime,
    found: Estimate | None,
    *,
    trusted: bool,
    tolerance_s: float,
    horizon_s: float | None = None,
) -> CorrectedTime:
    """Apply the policy (module text) to one device time."""

    def unchanged(reason: str) -> CorrectedTime:
        return CorrectedTime(source_id, device_time, device_time, 0.0, False, reason)

    if trusted:
        return unchanged("trusted source: its clock is the reference")
    if found is None or found.offset_s is None:
        return unchanged("offset not known yet (too few messages from this source)")
    if (
        horizon_s is not None
        and found.at is not None
        and abs((device_time - found.at).total_seconds()) > horizon_s + abs(found.offset_s)
    ):
        # A recording made long before (or after) the samples the estimate rests on: the
        # clock may have been set since, so today's offset says nothing about that time.
        return unchanged(
            f"device time is more than {horizon_s / 3600:g} h from the estimate "
            f"({found.at.isoformat(timespec='seconds')}): the offset then is not known"
        )
    # The drift carries the estimate to the time in question (device time less the offset
    # is near enough the true time for a drift of a few ppm).
    extrapolated = found.offset_at(device_time - timedelta(seconds=found.offset_s))
    offset = found.offset_s if extrapolated is None else extrapolated
    if abs(offset) - found.uncertainty_s <= tolerance_s:
        return unchanged(
            f"offset {offset:+.0f} s is within the tolerance of {tolerance_s:g} s "
            f"(uncertainty {found.uncertainty_s:.1f} s)"
        )
    # Whole seconds: HL7 times carry no more, and a corrected time claims no more.
    applied = float(round(offset))
    return CorrectedTime(
        source_id,
        device_time,
        device_time - timedelta(seconds=applied),
        applied,
        True,
        f"device clock {applied:+.0f} s off",
        found.at,
    )


def record_correction(resource: dict[str, Any], element: str, corrected: CorrectedTime) -> None:
    """Set `resource[element]` (e.g. "effectiveDateTime") to the true time and record the
    correction on it; a time not corrected is left as it is, with nothing recorded."""
    if not corrected.applied:
        return
    resource[element] = corrected.true_time.isoformat(timespec="seconds")
    parts: list[dict[str, Any]] = [
        {"url": "deviceTime", "valueDateTime": corrected.device_time.isoformat(timespec="seconds")},
        {
            "url": "offset",
            "valueQuantity": {
                "value": corrected.offset_s,
                "unit": "s",
                "system": UCUM,
                "code": "s",
            },
        },  # fmt: skip
        {"url": "source", "valueString": corrected.source_id},
    ]
    if corrected.estimated_at is not None:
        parts.append(
            {"url": "estimatedAt",
             "valueDateTime": corrected.estimated_at.isoformat(timespec="seconds")}
        )  # fmt: skip
    annotations = resource.setdefault(f"_{element}", {})
    extensions = [
        e for e in annotations.get("extension", []) if e.get("url") != CORRECTION_EXTENSION
    ]
    extensions.append({"url": CORRECTION_EXTENSION, "extension": parts})
    annotations["extension"] = extensions
