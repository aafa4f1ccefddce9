"""Device clock corrections on the way into the FHIR store: the output adjuster registered as
`greenchannel.output_adjusters: device-clocks`.

The engine hands every mapped Bundle of a channel to it just before the FHIR destination
writes it, with what the journal knows of the inbound message (`Outbound.sender`, `.sent_at`).
The message's source is `<channel>:<sender>` (`source_id_for`); the elements that hold times
stamped by that source's clock are data: `clocks.device_times` in config/greenchannel.yaml
names them per channel and resource type. Each such time goes through the correction policy
(`ClockRegistry.correct`) and, when corrected, carries the record of it on the element
(`devices.clock.correction`). A channel no rule names gets no adjuster at all.

The source's clock is read from the clock tables the monitor keeps (one row, at most every
`poll_s` per source and channel), in the engine's main process, which has the database: the
processing workers that run mappings have none. The journalled payload is never changed, so a
retry or a reprocess corrects afresh with the estimate of that moment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.config import ClockSettings, clock_settings
from devices.clock.reader import correct_element
from devices.clock.registry import ClockRegistry, SourceClock, source_id_for
from devices.clock.store import load_sources
from engine.connectors import ConnectorContext, Outbound

__all__ = ["ClockAdjuster", "ClockAdjusterFactory", "device_time_slots"]

log = logging.getLogger(__name__)


def device_time_slots(resource: dict[str, Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every (object, key) that `path` (dotted, lists walked item by item) reaches in
    `resource`, whether or not the key is there: `location.period.start` of an Encounter is
    each location's period's `start`."""
    *parents, last = path.split(".")
    nodes: list[Any] = [resource]
    for part in parents:
        reached: list[Any] = []
        for node in nodes:
            child = node.get(part) if isinstance(node, dict) else None
            reached.extend(child if isinstance(child, list) else [child])
        nodes = reached
    for node in nodes:
        if isinstance(node, dict):
            yield node, last


class ClockAdjuster:
    """Corrects the device times of one channel's Bundles (module text)."""

    def __init__(
        self,
        database: AsyncEngine,
        settings: ClockSettings,
        elements: dict[str, tuple[str, ...]],
    ) -> None:
        self._database = database
        self._settings = settings
        self._elements = elements
        self.registry = ClockRegistry(settings)
        self._read_at: dict[str, float] = {}  # source id -> monotonic time of the last read

    async def adjust(self, document: Any, outbound: Outbound) -> None:
        if not isinstance(document, dict):
            return
        source_id = source_id_for(outbound.channel, outbound.sender)
        resources = [
            entry.get("resource")
            for entry in document.get("entry") or []
            if isinstance(entry, dict)
        ]
        slots = [
            (parent, key)
            for resource in resources
            if isinstance(resource, dict)
            for path in self._elements.get(str(resource.get("resourceType")), ())
            for parent, key in device_time_slots(resource, path)
            if key in parent
        ]
        if not slots:
            return
        await self._refresh(source_id)
        applied = 0
        for parent, key in slots:
            corrected = correct_element(self.registry, parent, key, source_id)
            applied += bool(corrected is not None and corrected.applied)
        if applied:
            log.info(
                "clocks.corrected",
                extra={
                    "channel": outbound.channel,
                    "message_id": outbound.message_id,
                    "source": source_id,
                    "elements": applied,
                },
            )

    async def _refresh(self, source_id: str) -> None:
        """The source's clock as the monitor last saved it, read again after `poll_s`."""
        now = time.monotonic()
        if now - self._read_at.get(source_id, -1e9) < self._settings.poll_s:
            return
        try:
            async with self._database.connect() as connection:
                found: list[SourceClock] = await connection.run_sync(
                    lambda c: load_sources(c, {source_id})
                )
        except SQLAlchemyError as exc:
            # The last estimate read stays in use (none: nothing is corrected); the database
            # trouble shows in the FHIR store's write just after if it lasts.
            log.warning("clocks.read_failed", extra={"source": source_id, "error": str(exc)})
            return
        self._read_at[source_id] = now
        for source in found:
            self.registry.put(source)


class ClockAdjusterFactory:
    """Entry point `greenchannel.output_adjusters: device-clocks`."""

    def build(self, context: ConnectorContext) -> ClockAdjuster | None:
        settings = clock_settings(getattr(context.extra.get("settings"), "clocks", None))
        elements = settings.device_elements(context.channel)
        if not elements:
            return None
        return ClockAdjuster(context.database, settings, elements)
