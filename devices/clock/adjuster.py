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
from collections.abc import Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.config import ClockSettings, clock_settings
from devices.clock.reader import SavedClocks, correct_element
from devices.clock.registry import source_id_for
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
        self._elements = elements
        self.clocks = SavedClocks(database, settings)
        self.registry = self.clocks.registry

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
        await self.clocks.refresh(source_id)
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


class ClockAdjusterFactory:
    """Entry point `greenchannel.output_adjusters: device-clocks`."""

    def build(self, context: ConnectorContext) -> ClockAdjuster | None:
        settings = clock_settings(getattr(context.extra.get("settings"), "clocks", None))
        elements = settings.device_elements(context.channel)
        if not elements:
            return None
        return ClockAdjuster(context.database, settings, elements)
