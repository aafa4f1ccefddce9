"""Accepted records follow their source data: a change-event subscriber (entry point
`greenchannel.subscribers: registry-upload`) that every few minutes rebuilds the records the
platform has accepted and queues an update (with the case's REGISTER_ID) for each one whose
payload hash changed — a corrected name at the HIS, a late troponin, a discharge.

A sweep rather than one rebuild per change event: a case's resources change in bursts (a
message brings several), and one rebuild per case per sweep sends one update for the burst.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from engine.subscribers import SubscriberContext
from fhir_store import FhirStore
from pathways.registry_upload.service import CENTER_OF, RegistryUploads
from pathways.registry_upload.workflow import QueueResult

__all__ = ["AUTOMATIC", "ChangedRecordSweeper", "ChangedRecordSweeperFactory"]

log = logging.getLogger(__name__)

AUTOMATIC = "automatic: source data changed"
SWEEP_S = 300.0


class ChangedRecordSweeper:
    """Queues updates of accepted records whose source data changed, every `interval_s`."""

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

    async def sweep(self) -> list[tuple[str, QueueResult]]:
        """One look at every registry's accepted cases; the updates it queued."""
        queued = []
        for registry in sorted(CENTER_OF):
            for case_id, result in await self._uploads.requeue_changed(registry, who=AUTOMATIC):
                log.info(
                    "registry.update_queued",
                    extra={"case_id": case_id, "registry": registry, "outcome": result.outcome},
                )
                queued.append((case_id, result))
        return queued

    async def run(self) -> None:
        """Sweep every interval until cancelled (the uploads themselves are in the journal)."""
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
