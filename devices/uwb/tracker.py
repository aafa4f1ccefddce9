"""Zone entry and exit of one tag from its fixes, with hysteresis. Pure: no clock, no I/O.

The rules (docs/uwb.md):
- **Entry** needs `dwell_s` of fixes in the zone with no fix elsewhere in between (and no
  silence longer than `silent_after_s`); the entry instant is the first of those fixes.
- **Exit to no zone** needs `exit_after_s` (longer than the dwell) of fixes outside it; the exit
  instant is the first fix outside. **Exit into another zone** happens when that zone's entry
  is confirmed: the tag is in one zone at a time.
- Jitter at a boundary (fixes flipping between two zones faster than the dwell) changes nothing.
- A **silent** tag (no fix for `silent_after_s`) is unknown, not gone: silence never makes an
  exit, and fixes in the same zone after the silence continue the stay.
- Fixes older than the last one are ignored, so a replayed message changes nothing.
- The caller drops low-confidence fixes before (`ZoneMap.confident`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, Literal

from devices.uwb.zones import Timing

__all__ = ["Entered", "Left", "TagState", "ZoneEvent", "presence", "step"]


@dataclass(frozen=True, slots=True)
class Entered:
    zone: str
    at: datetime  # the first fix of the stay


@dataclass(frozen=True, slots=True)
class Left:
    zone: str
    at: datetime  # the first fix outside after the last one inside


ZoneEvent = Entered | Left


@dataclass(frozen=True, slots=True)
class TagState:
    """What the tracker remembers of one tag between fixes."""

    zone: str | None = None  # the confirmed zone
    entered_at: datetime | None = None
    last_in: datetime | None = None  # the last fix in the confirmed zone
    away_since: datetime | None = None  # the first fix outside it since last_in
    candidate: str | None = None  # a zone being dwelt in, not yet entered
    candidate_since: datetime | None = None
    candidate_last: datetime | None = None
    last_fix: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TagState:
        def value(key: str) -> Any:
            raw = data.get(key)
            if raw is not None and key not in ("zone", "candidate"):
                return datetime.fromisoformat(raw)
            return raw

        return cls(**{key: value(key) for key in cls.__dataclass_fields__})


def step(
    state: TagState, zone: str | None, at: datetime, timing: Timing
) -> tuple[TagState, list[ZoneEvent]]:
    """Apply one confident fix (in `zone`, or in none) at `at`; the new state and its events."""
    if state.last_fix is not None and at <= state.last_fix:
        return state, []  # out of order or replayed
    silent = state.last_fix is not None and (at - state.last_fix).total_seconds() > (
        timing.silent_after_s
    )
    state = replace(state, last_fix=at)
    if zone is not None and zone == state.zone:
        stay = replace(state, last_in=at, away_since=None)
        return replace(stay, candidate=None, candidate_since=None, candidate_last=None), []
    events: list[ZoneEvent] = []
    if (current := state.zone) is not None:
        away_since = state.away_since or at
        state = replace(state, away_since=away_since)
        if zone is None and (at - away_since).total_seconds() >= timing.exit_after_s:
            events.append(Left(current, away_since))
            state = replace(state, zone=None, entered_at=None, last_in=None, away_since=None)
    if zone is None:
        return replace(state, candidate=None, candidate_since=None, candidate_last=None), events
    if state.candidate == zone and not silent:
        state = replace(state, candidate_last=at)
    else:
        state = replace(state, candidate=zone, candidate_since=at, candidate_last=at)
    entered_at = state.candidate_since or at
    if (at - entered_at).total_seconds() < timing.dwell_s:
        return state, events
    if state.zone is not None:
        events.append(Left(state.zone, state.away_since or entered_at))
    events.append(Entered(zone, entered_at))
    state = TagState(zone=zone, entered_at=entered_at, last_in=at, last_fix=at)
    return state, events


Presence = Literal["unknown", "outside"] | str


def presence(state: TagState, now: datetime, timing: Timing) -> Presence:
    """Where the tag is now: its zone key, "outside" (seen, in no zone) or "unknown" (silent)."""
    if state.last_fix is None or (now - state.last_fix).total_seconds() > timing.silent_after_s:
        return "unknown"
    return state.zone or "outside"
