"""The UWB side of Encounter changes: a change-event subscriber (entry point
`greenchannel.subscribers: uwb-encounters`) that follows the FHIR store's changes under its own
cursor. For each batch of changes, one query finds which of the changed Encounters UWB ever
touched (remembered stays, bands bound now); the many it never touched cost nothing more. For
those it did:

- the zone stays UWB wrote into it and that an HIS update replaced (ADT maps to a whole-resource
  PUT) are written again (`history.restore`), so the location history and the time nodes taken
  from it survive the HIS's updates;
- when it is `finished` (ADT A03 maps to it), its wristbands are unbound as of its `period.end`
  (or now): they then show on the board as waiting to be returned to the desk.

Idempotent: a replayed change finds the stays in place and nothing left bound; its own write of
the stays comes back as a change that changes nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from devices.uwb.history import restore, with_stays
from devices.uwb.wristbands import unbind_encounter, with_open_bands
from devices.uwb.zones import ZoneMap, load_zones
from engine.subscribers import SubscriberContext
from fhir_store import ChangeEvent, ChangeFeed, FhirStore, FhirStoreError

__all__ = ["UwbSubscriber", "UwbSubscriberFactory"]

log = logging.getLogger(__name__)


class UwbSubscriber:
    def __init__(
        self,
        database: AsyncEngine,
        *,
        name: str,
        zones: ZoneMap,
        timezone: tzinfo,
        run_write: Any = None,
        poll_s: float = 1.0,
    ) -> None:
        self._database = database
        self._name = name
        self._zones = zones
        self._tz = timezone
        self._store = FhirStore(
            database, check_references=False, run_write=run_write, timezone=timezone
        )
        self._feed = ChangeFeed(database, poll_interval_s=poll_s, run_write=run_write)

    async def run(self) -> None:
        """Follow the changes from the committed cursor (a new subscriber starts at now: there
        is nothing of UWB in the changes before it existed)."""
        await self._feed.start(self._name, new="future")
        async for events in self._feed.follow(self._name):
            await self.handle_batch(events)
            await self._feed.commit(self._name, events[-1].sequence)

    async def catch_up(self) -> int:
        """Process every event after the cursor; how many."""
        after = await self._feed.start(self._name, new="future")
        handled = 0
        while events := await self._feed.read(after):
            await self.handle_batch(events)
            after = events[-1].sequence
            await self._feed.commit(self._name, after)
            handled += len(events)
        return handled

    async def handle_batch(self, events: list[ChangeEvent]) -> None:
        changed = list(
            dict.fromkeys(
                event.resource_id
                for event in events
                if event.resource_type == "Encounter" and event.action != "delete"
            )
        )
        if not changed:
            return
        async with self._database.connect() as connection:
            stays, bands = await connection.run_sync(
                lambda c: (with_stays(c, changed), with_open_bands(c, changed))
            )
        for encounter_id in changed:
            if encounter_id in stays:
                await self._restore(encounter_id)
            if encounter_id in bands:
                await self._unbind_if_finished(encounter_id)

    async def _restore(self, encounter_id: str) -> None:
        if await restore(self._store, self._database, self._zones, self._tz, encounter_id):
            log.info("uwb.stays_written_again", extra={"encounter": encounter_id})

    async def _unbind_if_finished(self, encounter_id: str) -> None:
        try:
            encounter = await self._store.read("Encounter", encounter_id)
        except FhirStoreError:
            return  # deleted since: nothing to unbind by
        if encounter.get("status") != "finished":
            return
        end = encounter.get("period", {}).get("end")
        at = datetime.fromisoformat(end) if isinstance(end, str) and "T" in end else None
        if at is None or at.tzinfo is None:
            at = datetime.now(self._tz)
        tags = await unbind_encounter(self._database, encounter_id, at)
        if tags:
            log.info(
                "uwb.unbound_at_discharge", extra={"encounter": encounter_id, "tags": len(tags)}
            )

    async def aclose(self) -> None:
        await self._store.aclose()


class UwbSubscriberFactory:
    """Entry point `greenchannel.subscribers: uwb-encounters`."""

    def build(self, context: SubscriberContext) -> UwbSubscriber:
        return UwbSubscriber(
            context.database,
            name=context.name,
            zones=load_zones(),
            timezone=context.timezone,
            run_write=context.run_write,
        )
