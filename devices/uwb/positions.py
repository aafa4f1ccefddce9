"""What a UWB channel does with each message: fixes to zone events per tag (`tracker`), the
events of a bound wristband into its Encounter's location history (`encounter`), staff badge
taps into Observations (`taps`), and each tag's tracker state and last fix kept in the UWB
tables.

Order of writes makes a retry safe: the Encounter is updated first (a read-modify-write with
If-Match, so nothing the HIS wrote in between is lost; a conflict re-reads and tries again),
then the tracker state. A crash between the two replays the same events, which the Encounter
already has (`apply_events` is idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.correction import CorrectedTime
from devices.clock.reader import SavedClocks
from devices.uwb.errors import UnknownTag, UwbPayloadError
from devices.uwb.fixes import Fix, parse_fixes, sewio_time
from devices.uwb.history import WriteRunner, remember, write_events
from devices.uwb.tables import Tag
from devices.uwb.taps import Tap, badge_tap_observation, is_tap, parse_tap
from devices.uwb.tracker import TagState, ZoneEvent, step
from devices.uwb.wristbands import open_binding
from devices.uwb.zones import ZoneMap
from fhir_store import FhirStore

__all__ = ["Outcome", "UwbProcessor", "read_message"]

_TAG = cast(Table, Tag.__table__)


@dataclass(slots=True)
class Outcome:
    """What one message did, for the delivery's detail line."""

    fixes: int = 0
    dropped: int = 0  # unsure fixes
    events: list[str] = field(default_factory=list)
    taps: int = 0

    def detail(self) -> str:
        text = f"{self.fixes} fixes ({self.dropped} unsure, dropped)"
        if self.taps:
            text += f", {self.taps} badge taps"
        return text + (f"; {', '.join(self.events)}" if self.events else "; no zone change")


def read_message(raw: bytes) -> list[Fix | Tap]:
    """Every fix and tap in one gateway or reader message; UwbPayloadError if unreadable."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return list(parse_fixes(raw))  # raises the precise UwbPayloadError
    if is_tap(document):
        return [parse_tap(document)]
    items: list[Fix | Tap] = list(parse_fixes(raw))
    button = _sewio_button(document)
    if button is not None:
        items.append(button)
    return items


def _sewio_button(document: Any) -> Tap | None:
    """A Sewio feed message with a `user_button` datastream: a badge's button was pressed."""
    body = document.get("body") if isinstance(document, dict) else None
    if not isinstance(body, dict) or not isinstance(body.get("datastreams"), list):
        return None
    for stream in body["datastreams"]:
        if isinstance(stream, dict) and stream.get("id") == "user_button":
            badge = body.get("id")
            if not isinstance(badge, str | int):
                raise UwbPayloadError("missing or not a text id", location="$.body.id")
            at = sewio_time(stream.get("at"), "$.body.datastreams[user_button].at")
            return Tap(str(badge), at)
    return None


# How stale a tag's stored last fix may get before a steady fix (same zone, same candidate) is
# written anyway: the board's "last heard" and the silence check are this exact.
_HEARD_EVERY = timedelta(seconds=5)


def _worth_writing(
    before: TagState, after: TagState, stored_heard: datetime | None, heard: datetime
) -> bool:
    """Whether the fix changed what the tracker decides on (zone, candidate and its start, away
    time), or the stored last fix is older than _HEARD_EVERY. A steady tag then costs one read
    per fix instead of a read and a commit; a fix left unwritten and later redelivered gives the
    same events again, which the Encounter already has."""
    if stored_heard is None or heard - stored_heard >= _HEARD_EVERY:
        return True
    steady = ("last_fix", "last_in", "candidate_last")
    return replace(before, **dict.fromkeys(steady)) != replace(after, **dict.fromkeys(steady))


class UwbProcessor:
    """Applies messages of one UWB channel to the UWB tables and the FHIR store."""

    def __init__(
        self,
        database: AsyncEngine,
        store: FhirStore,
        zones: ZoneMap,
        timezone: tzinfo,
        run_write: WriteRunner | None = None,
        clocks: SavedClocks | None = None,
        clock_source: str = "",
    ) -> None:
        """`clocks` and `clock_source` (the channel, whose gateway stamps the fixes): zone
        entries and exits go into the Encounter in true time, corrected by the clock the
        monitor keeps of that source (devices.clock); without them, as the gateway stamped."""
        self._database = database
        self._run_write = run_write
        self._store = store
        self._zones = zones
        self._tz = timezone
        self._clocks = clocks
        self._clock_source = clock_source

    async def handle(self, raw: bytes) -> Outcome:
        """Apply one message; UwbPayloadError, UnknownTag, or the store's errors."""
        items = read_message(raw)  # none for battery or firmware news: nothing to do
        outcome = Outcome()
        for item in items:
            if isinstance(item, Tap):
                await self._tap(item)
                outcome.taps += 1
            else:
                await self._fix(item, outcome)
        return outcome

    async def _true_times(
        self, events: list[ZoneEvent]
    ) -> tuple[list[ZoneEvent], dict[ZoneEvent, CorrectedTime]]:
        """The events in true time, and the corrections made (the tracker keeps device time)."""
        if self._clocks is None:
            return events, {}
        written: list[ZoneEvent] = []
        corrections: dict[ZoneEvent, CorrectedTime] = {}
        for event in events:
            device_time = event.at.astimezone(self._tz)
            corrected = await self._clocks.correct(self._clock_source, device_time)
            if not corrected.applied:
                written.append(event)
                continue
            moved = replace(event, at=corrected.true_time)
            corrections[moved] = corrected
            written.append(moved)
        return written, corrections

    async def _tag(self, tag_id: str) -> Any:
        async with self._database.connect() as connection:
            row = (await connection.execute(select(_TAG).where(_TAG.c.tag_id == tag_id))).first()
        if row is None:
            raise UnknownTag(
                f"tag {tag_id} is not registered",
                hint="register it (`greenchannel wristband register`) or bind it to a patient; "
                "the message is kept in the journal and can be reprocessed",
            )
        return row

    async def _tap(self, tap: Tap) -> None:
        tag = await self._tag(tap.badge_id)
        if tag.kind != "badge" or not tag.practitioner_id:
            raise UnknownTag(
                f"tag {tap.badge_id} is not a staff badge",
                hint="register it with `greenchannel wristband register --badge PRACTITIONER`",
            )
        state = TagState.from_json(json.loads(tag.state)) if tag.state else TagState()
        if tap.zone is None and state.zone is not None:
            tap = Tap(tap.badge_id, tap.at, tap.reader, state.zone, tap.action)
        observation = badge_tap_observation(tap, tag.practitioner_id, self._tz)
        await self._store.update("Observation", observation["id"], observation)

    async def _fix(self, fix: Fix, outcome: Outcome) -> None:
        tag = await self._tag(fix.tag_id)
        outcome.fixes += 1
        before = TagState.from_json(json.loads(tag.state)) if tag.state else TagState()
        state, events = before, list[ZoneEvent]()
        if self._zones.confident(fix):
            state, events = step(before, self._zones.locate(fix), fix.at, self._zones.timing)
        else:
            outcome.dropped += 1
        if events and tag.kind == "wristband":
            binding = await open_binding(self._database, fix.tag_id)
            if binding is not None:
                written, corrections = await self._true_times(events)
                await write_events(
                    self._store, self._zones, self._tz, binding.encounter_id, written, corrections
                )
                await remember(
                    self._database, self._run_write, binding.encounter_id, fix.tag_id, written
                )
                outcome.events.extend(
                    f"{type(e).__name__.lower()} {e.zone} (Encounter/{binding.encounter_id})"
                    for e in events
                )
            else:
                outcome.events.extend(f"{type(e).__name__.lower()} {e.zone} (unbound)"
                                      for e in events)  # fmt: skip
        heard = fix.at if tag.last_heard_at is None else max(tag.last_heard_at, fix.at)
        if not _worth_writing(before, state, tag.last_heard_at, heard):
            return
        statement = (
            update(_TAG)
            .where(_TAG.c.tag_id == fix.tag_id)
            .values(last_heard_at=heard, state=json.dumps(state.to_json()))
        )
        if self._run_write is not None:  # the engine's write thread (one SQLite writer)
            await self._run_write(lambda connection: connection.execute(statement))
            return
        async with self._database.begin() as connection:
            await connection.execute(statement)
