"""Accepted records follow their source data: a change-event subscriber (entry point
`greenchannel.subscribers: registry-upload`) that every few minutes rebuilds the records the
platform has accepted and sends each one whose payload hash changed — a corrected name at the
HIS, a late troponin, a discharge — back to `draft`, with the fields that changed, for the
registry staff to review and mark ready again (issue 7's workflow). It uploads nothing: the
update, with the case's REGISTER_ID, goes when staff ask for it.

A sweep rather than one rebuild per change event: a case's resources change in bursts (a
message brings several), and one rebuild per case per sweep records the burst once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from engine.subscribers import SubscriberContext
from fhir_store import FhirStore
from pathways.registry_upload.service import CENTER_OF, RegistryUploads
from pathways.registry_upload.workflow import DETECTED_BY, StateView

__all__ = ["AUTOMATIC", "ChangedRecordSweeper", "ChangedRecordSweeperFactory"]

log = logging.getLogger(__name__)

AUTOMATIC = DETECTED_BY
SWEEP_S = 300.0


class ChangedRecordSweeper:
    """Sends accepted cases whose source data changed back to draft, every `interval_s`."""

    def __init__(self, context: SubscriberContext, *, interval_s: float = SWEEP_S) -> None:
        self._interval_s = interval_s
        self._store = FhirStore(
            context.database, timezone=context.timezone, run_write=context.run_write
        )
        tz = context.timezone
        self._uploads = RegistryUploads(
            context.database,
            self._store,
            now=lambda: datetime.now(tz).replace(microsecond=0),
            data_dir=context.data_dir,
            run_write=context.run_write,
        )

    async def sweep(self) -> list[tuple[str, StateView]]:
        """One look at every registry's accepted cases; the cases whose state it moved."""
        moved = []
        for registry in sorted(CENTER_OF):
            for state in await self._uploads.send_back_changed(registry):
                log.info(
                    "registry.source_changed",
                    extra={"case_id": state.case_id, "registry": registry, "state": state.state},
                )
                moved.append((state.case_id, state))
        return moved

    async def run(self) -> None:
        """Sweep every interval until cancelled."""
        while True:
            await asyncio.sleep(self._interval_s)
            await self.sweep()

    async def aclose(self) -> None:
        """Close the store's connections."""
        await self._store.aclose()


class ChangedRecordSweeperFactory:
    """Entry point `greenchannel.subscribers: registry-upload`."""

    def build(self, context: SubscriberContext) -> ChangedRecordSweeper:
        """The sweeper on the engine's database."""
        return ChangedRecordSweeper(context)
