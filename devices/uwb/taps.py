"""Staff badge taps: who (the practitioner wearing the badge) did something, and when.

A tap arrives two ways:
- an NFC reader posts `{"badgeId": "B-1042", "readerId": "cathlab-door", "timestamp":
  "2026-11-25T08:47:10+08:00", "action": "cath-lab-team-arrived"}` (`action` optional; the
  timestamp ISO 8601 with offset, or epoch seconds);
- a UWB badge's button: a Sewio feed message with the `user_button` datastream.

It is recorded as an Observation (`badge_tap_observation`): code `badge-tap`, `performer` the
Practitioner, `effectiveDateTime` the tap, `device` the badge, the reader and the zone in
components, the action in `valueCodeableConcept`; its id is derived from badge and instant, so
a resent tap is stored once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from devices.uwb.encounter import instant
from devices.uwb.errors import UwbPayloadError
from devices.uwb.fixes import epoch_time

__all__ = [
    "DEVICE_EVENT_SYSTEM",
    "TAG_SYSTEM",
    "Tap",
    "badge_tap_observation",
    "is_tap",
    "parse_tap",
]

DEVICE_EVENT_SYSTEM = "https://greenchannel.example.org/fhir/CodeSystem/device-event"
PATHWAY_EVENT_SYSTEM = "https://greenchannel.example.org/fhir/CodeSystem/pathway-event"
TAG_SYSTEM = "urn:greenchannel:uwb-tag"


@dataclass(frozen=True, slots=True)
class Tap:
    badge_id: str
    at: datetime
    reader: str | None = None
    zone: str | None = None
    action: str | None = None


def is_tap(document: Any) -> bool:
    return isinstance(document, dict) and "badgeId" in document


def parse_tap(document: dict[str, Any]) -> Tap:
    badge = document.get("badgeId")
    if not isinstance(badge, str) or not badge.strip():
        raise UwbPayloadError("missing or not a text id", location="$.badgeId")
    at = _time(document.get("timestamp"))
    reader, action = document.get("readerId"), document.get("action")
    for key, value in (("readerId", reader), ("action", action)):
        if value is not None and not isinstance(value, str):
            raise UwbPayloadError("must be text", location=f"$.{key}")
    return Tap(badge.strip(), at, reader, None, action)


def _time(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return epoch_time(value, "$.timestamp")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    raise UwbPayloadError(
        "missing: ISO 8601 with an offset (2026-11-25T08:47:10+08:00) or epoch seconds",
        location="$.timestamp",
    )


def badge_tap_observation(tap: Tap, practitioner_id: str, zone: tzinfo) -> dict[str, Any]:
    """The Observation recording a tap (see the module docstring)."""
    at = instant(tap.at, zone)
    digest = hashlib.sha256(f"{tap.badge_id}|{tap.at.isoformat()}".encode()).hexdigest()[:32]
    components: list[dict[str, Any]] = []
    if tap.reader:
        components.append(_component("reader", tap.reader))
    if tap.zone:
        components.append(_component("zone", tap.zone))
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"tap-{digest}",
        "status": "final",
        "code": {"coding": [{"system": DEVICE_EVENT_SYSTEM, "code": "badge-tap"}]},
        "effectiveDateTime": at,
        "issued": at if tap.at.microsecond == 0 else instant(tap.at, zone),
        "performer": [{"reference": f"Practitioner/{practitioner_id}"}],
        "device": {"identifier": {"system": TAG_SYSTEM, "value": tap.badge_id}},
    }
    if tap.action:
        observation["valueCodeableConcept"] = {
            "coding": [{"system": PATHWAY_EVENT_SYSTEM, "code": tap.action}]
        }
    if components:
        observation["component"] = components
    return observation


def _component(code: str, value: str) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": DEVICE_EVENT_SYSTEM, "code": code}]},
        "valueString": value,
    }
