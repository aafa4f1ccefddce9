"""A wristband's zone stays into its Encounter, and back into it when an HIS update replaced
them.

`write_events` updates the Encounter by read-modify-write with If-Match on its version, so
nothing the HIS wrote is lost (a concurrent write makes it read again); `remember` keeps each
stay in `uwb_stay` too; `restore` writes the remembered stays again into an Encounter whose
location history no longer has them (an ADT A08 or A03 maps to a whole-Encounter PUT, which
replaces `location`). Both are idempotent: writing what is there already changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import tzinfo
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.correction import CorrectedTime
from devices.uwb.encounter import apply_events
from devices.uwb.tables import Stay
from devices.uwb.tracker import Entered, Left, ZoneEvent
from devices.uwb.zones import Zone, ZoneMap
from engine.database import insert_skipping_conflicts
from fhir_store import FhirStore, NotFound, VersionConflict

__all__ = [
    "UnknownEncounter",
    "WriteRunner",
    "remember",
    "restore",
    "with_stays",
    "write_events",
]

WriteRunner = Callable[[Callable[[Any], Any]], Awaitable[Any]]
_STAY = cast(Table, Stay.__table__)
_CONFLICT_RETRIES = 5


class UnknownEncounter(NotFound):
    """The bound encounter is not in the store (yet): the HIS has not sent it."""

    def __init__(self, encounter_id: str) -> None:
        super().__init__(
            f"the wristband is bound to Encounter/{encounter_id}, which the store does not have "
            "(yet); retried until the HIS registration arrives",
            retryable=True,
        )


async def write_events(
    store: FhirStore,
    zones: ZoneMap,
    zone: tzinfo,
    encounter_id: str,
    events: list[ZoneEvent],
    corrections: Mapping[ZoneEvent, CorrectedTime] | None = None,
) -> bool:
    """The events into the Encounter; whether it changed. UnknownEncounter if it is missing.
    `corrections`: the events whose times were corrected into true time (`apply_events`)."""
    known = {z.key for z in zones.zones}
    located: list[tuple[ZoneEvent, Zone]] = [
        (event, zones.by_key(event.zone)) for event in events if event.zone in known
    ]  # a zone since removed from zones.yaml is not written again
    for _ in range(_CONFLICT_RETRIES):
        try:
            current = await store.read("Encounter", encounter_id)
        except NotFound as exc:
            raise UnknownEncounter(encounter_id) from exc
        changed = apply_events(current, located, zone, corrections)
        if changed == current:
            return False
        try:
            version = int(current["meta"]["versionId"])
            await store.update("Encounter", encounter_id, changed, if_match=version)
            return True
        except VersionConflict:
            continue  # the HIS wrote in between: read its version and add again
    raise VersionConflict(f"Encounter/{encounter_id} kept changing; retried")


async def remember(
    database: AsyncEngine,
    run_write: WriteRunner | None,
    encounter_id: str,
    tag_id: str,
    events: list[ZoneEvent],
) -> None:
    """Keep the stays the events open and close."""

    def work(connection: Connection) -> None:
        for event in events:
            if isinstance(event, Entered):
                statement = insert_skipping_conflicts(
                    _STAY, connection.dialect, "encounter_id", "zone", "started_at"
                ).values(
                    encounter_id=encounter_id, tag_id=tag_id, zone=event.zone, started_at=event.at
                )
                connection.execute(statement)
                continue
            latest = connection.execute(
                select(_STAY.c.id)
                .where(
                    _STAY.c.encounter_id == encounter_id,
                    _STAY.c.zone == event.zone,
                    _STAY.c.ended_at.is_(None),
                )
                .order_by(_STAY.c.started_at.desc())
                .limit(1)
            ).scalar()
            if latest is not None:
                connection.execute(
                    update(_STAY).where(_STAY.c.id == latest).values(ended_at=event.at)
                )

    if run_write is not None:
        await run_write(work)
        return
    async with database.begin() as connection:
        await connection.run_sync(work)


def with_stays(connection: Connection, encounter_ids: Collection[str]) -> set[str]:
    """Which of the encounters have remembered stays: one indexed query for a whole batch of
    changed Encounters, so that the many without UWB cost no read of their own."""
    if not encounter_ids:
        return set()
    rows = connection.execute(
        select(_STAY.c.encounter_id).where(_STAY.c.encounter_id.in_(list(encounter_ids))).distinct()
    )
    return set(rows.scalars())


async def remembered(database: AsyncEngine, encounter_id: str) -> list[ZoneEvent]:
    """The encounter's stays as events, in time order."""
    async with database.connect() as connection:
        rows = (
            await connection.execute(
                select(_STAY.c.zone, _STAY.c.started_at, _STAY.c.ended_at).where(
                    _STAY.c.encounter_id == encounter_id
                )
            )
        ).all()
    events: list[ZoneEvent] = []
    for row in rows:
        events.append(Entered(row.zone, row.started_at))
        if row.ended_at is not None:
            events.append(Left(row.zone, row.ended_at))
    # at one instant, the exit of one zone before the entry of the next
    return sorted(events, key=lambda e: (e.at, isinstance(e, Entered)))


async def restore(
    store: FhirStore, database: AsyncEngine, zones: ZoneMap, zone: tzinfo, encounter_id: str
) -> bool:
    """Write the remembered stays again where the Encounter lost them; whether it did."""
    events = await remembered(database, encounter_id)
    if not events:
        return False
    try:
        return await write_events(store, zones, zone, encounter_id, events)
    except UnknownEncounter:
        return False  # deleted since
