"""Zone entries and exits as Encounter location history: one `Encounter.location` entry per
stay, `location.identifier` {system `urn:greenchannel:uwb-zone`, value: the zone key},
`period.start` the entry, `period.end` the exit, status active then completed.

Pure functions on the Encounter JSON: what the HIS wrote (its own locations, everything else)
is kept as it is; applying the same event twice changes nothing.
"""

from __future__ import annotations

import copy
from datetime import datetime, tzinfo
from typing import Any

from devices.uwb.tracker import Entered, Left, ZoneEvent
from devices.uwb.zones import ZONE_SYSTEM, Zone

__all__ = ["apply_events", "instant"]


def instant(at: datetime, zone: tzinfo) -> str:
    """FHIR dateTime in local time with its offset, second precision."""
    return at.astimezone(zone).replace(microsecond=0).isoformat()


def apply_events(
    encounter: dict[str, Any], events: list[tuple[ZoneEvent, Zone]], zone: tzinfo
) -> dict[str, Any]:
    """A copy of `encounter` with the events in its location history."""
    result = copy.deepcopy(encounter)
    locations: list[dict[str, Any]] = result.setdefault("location", [])
    for event, where in events:
        at = instant(event.at, zone)
        mine = [entry for entry in locations if _zone_of(entry) == where.key]
        if isinstance(event, Entered):
            if any(entry.get("period", {}).get("start") == at for entry in mine):
                continue  # applied before (a replay)
            locations.append(
                {
                    "location": {
                        "identifier": {"system": ZONE_SYSTEM, "value": where.key},
                        "display": where.name,
                    },
                    "status": "active",
                    "period": {"start": at},
                }
            )
        elif isinstance(event, Left):
            open_stays = [entry for entry in mine if "end" not in entry.get("period", {})]
            if open_stays:
                stay = open_stays[-1]
                stay.setdefault("period", {})["end"] = at
                stay["status"] = "completed"
    if not locations:
        del result["location"]
    return result


def _zone_of(entry: dict[str, Any]) -> str | None:
    identifier = entry.get("location", {}).get("identifier", {})
    if identifier.get("system") == ZONE_SYSTEM:
        value = identifier.get("value")
        return value if isinstance(value, str) else None
    return None
