"""Zone entries and exits as Encounter location history: one `Encounter.location` entry per
stay, `location.identifier` {system `urn:greenchannel:uwb-zone`, value: the zone key},
`period.start` the entry, `period.end` the exit, status active then completed.

Pure functions on the Encounter JSON: what the HIS wrote (its own locations, everything else)
is kept as it is; applying the same event twice changes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from devices.clock.correction import CORRECTION_EXTENSION, CorrectedTime, record_correction
from devices.uwb.tracker import Entered, Left, ZoneEvent
from devices.uwb.zones import ZONE_SYSTEM, Zone

__all__ = ["apply_events", "instant"]


def instant(at: datetime, zone: tzinfo) -> str:
    """FHIR dateTime in local time with its offset, second precision."""
    return at.astimezone(zone).replace(microsecond=0).isoformat()


def apply_events(
    encounter: dict[str, Any],
    events: list[tuple[ZoneEvent, Zone]],
    zone: tzinfo,
    corrections: Mapping[ZoneEvent, CorrectedTime] | None = None,
) -> dict[str, Any]:
    """A copy of `encounter` with the events in its location history. An event in
    `corrections` is in true time already (the gateway's clock was off): the correction is
    recorded on the period's start or end, as on every corrected device time."""
    result = copy.deepcopy(encounter)
    locations: list[dict[str, Any]] = result.setdefault("location", [])
    for event, where in events:
        at = instant(event.at, zone)
        corrected = (corrections or {}).get(event)
        mine = [entry for entry in locations if _zone_of(entry) == where.key]
        if isinstance(event, Entered):
            if any(_same(entry.get("period", {}), "start", at, corrected) for entry in mine):
                continue  # applied before (a replay, perhaps under another clock estimate)
            period = {"start": at}
            if corrected is not None:
                record_correction(period, "start", corrected)
            locations.append(
                {
                    "location": {
                        "identifier": {"system": ZONE_SYSTEM, "value": where.key},
                        "display": where.name,
                    },
                    "status": "active",
                    "period": period,
                }
            )
        elif isinstance(event, Left):
            open_stays = [entry for entry in mine if "end" not in entry.get("period", {})]
            if open_stays:
                stay = open_stays[-1]
                period = stay.setdefault("period", {})
                period["end"] = at
                if corrected is not None:
                    record_correction(period, "end", corrected)
                stay["status"] = "completed"
    if not locations:
        del result["location"]
    return result


def _same(period: Mapping[str, Any], key: str, at: str, corrected: CorrectedTime | None) -> bool:
    """The period's `key` is this instant, or was corrected from the same device time."""
    if period.get(key) == at:
        return True
    if corrected is None:
        return False
    device_time = corrected.device_time.isoformat(timespec="seconds")
    for extension in period.get(f"_{key}", {}).get("extension", []):
        if extension.get("url") == CORRECTION_EXTENSION:
            parts = {part.get("url"): part for part in extension.get("extension", [])}
            return bool(parts.get("deviceTime", {}).get("valueDateTime") == device_time)
    return False


def _zone_of(entry: dict[str, Any]) -> str | None:
    identifier = entry.get("location", {}).get("identifier", {})
    if identifier.get("system") == ZONE_SYSTEM:
        value = identifier.get("value")
        return value if isinstance(value, str) else None
    return None
