"""Unbind at discharge: a change-event subscriber (entry point `greenchannel.subscribers:
uwb-discharge`) that follows the FHIR store's changes under its own cursor and, when an
Encounter is `finished` (ADT A03 maps to it), unbinds the encounter's wristbands as of its
`period.end` (or now). They then show on the board as waiting to be returned to the desk.

Idempotent: a replayed or repeated discharge finds nothing left bound.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from devices.uwb.wristbands import unbind_encounter
from engine.subscribers import SubscriberContext
from fhir_store import ChangeEvent, ChangeFeed, FhirStore, FhirStoreError

__all__ = ["DischargeSubscriber", "DischargeSubscriberFactory"]

log = logging.getLogger(__name__)


class DischargeSubscriber:
    def __init__(
        self, database: AsyncEngine, *, name: str, run_write: Any = None, poll_s: float = 1.0
    ) -> None:
        self._database = database
        self._name = name
        self._store = FhirStore(database, check_references=False, run_write=run_write)
        self._feed = ChangeFeed(database, poll_interval_s=poll_s, run_write=run_write)

    async def run(self) -> None:
        """Follow the changes from the committed cursor (new subscribers start at now: past
        discharges were unbound by hand before this existed)."""
        await self._feed.start(self._name, new="future")
        async for events in self._feed.follow(self._name):
            for event in events:
                await self.handle(event)
            await self._feed.commit(self._name, events[-1].sequence)

    async def catch_up(self) -> int:
        """Process every event after the cursor; how many."""
        after = await self._feed.start(self._name, new="future")
        handled = 0
        while events := await self._feed.read(after):
            for event in events:
                await self.handle(event)
            after = events[-1].sequence
            await self._feed.commit(self._name, after)
            handled += len(events)
        return handled

    async def handle(self, event: ChangeEvent) -> None:
        if event.resource_type != "Encounter" or event.action == "delete":
            return
        try:
            encounter = await self._store.read("Encounter", event.resource_id)
        except FhirStoreError:
            return  # deleted since: nothing to unbind by
        if encounter.get("status") != "finished":
            return
        end = encounter.get("period", {}).get("end")
        at = datetime.fromisoformat(end) if isinstance(end, str) and "T" in end else None
        if at is None or at.tzinfo is None:
            at = datetime.now().astimezone()
        tags = await unbind_encounter(self._database, event.resource_id, at)
        if tags:
            log.info(
                "uwb.unbound_at_discharge",
                extra={"encounter": event.resource_id, "tags": len(tags)},
            )

    async def aclose(self) -> None:
        await self._store.aclose()


class DischargeSubscriberFactory:
    """Entry point `greenchannel.subscribers: uwb-discharge`."""

    def build(self, context: SubscriberContext) -> DischargeSubscriber:
        return DischargeSubscriber(context.database, name=context.name, run_write=context.run_write)
