"""The clocks as saved, for code that corrects device times outside the monitor: a device
channel's connector, a pathway step, a registry exporter. Load once, correct many times."""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.config import ClockSettings
from devices.clock.correction import CorrectedTime, record_correction
from devices.clock.registry import ClockRegistry, SourceClock
from devices.clock.store import load_hosts, load_sources

__all__ = ["SavedClocks", "correct_element", "load_registry"]

log = logging.getLogger(__name__)


async def load_registry(database: AsyncEngine, settings: ClockSettings) -> ClockRegistry:
    """Every source's clock as the monitor last saved it (reads the clock tables once)."""
    async with database.connect() as connection:
        sources = await connection.run_sync(lambda c: load_sources(c))
        hosts = await connection.run_sync(lambda c: load_hosts(c))
    registry = ClockRegistry(settings, sources)
    measured = [h.offset_s for h in hosts if h.offset_s is not None]
    if measured:
        registry.host_offset_s = measured[0]
    return registry


def correct_element(
    registry: ClockRegistry, resource: dict[str, Any], element: str, source_id: str
) -> CorrectedTime | None:
    """Correct the device time in `resource[element]` (an ISO dateTime with offset, e.g. an
    Observation's `effectiveDateTime` from a device) and record the correction on it. None
    when the element holds no full instant (a date alone is not a device clock reading)."""
    value = resource.get(element)
    if not isinstance(value, str) or "T" not in value:
        return None
    try:
        device_time = datetime.fromisoformat(value)
    except ValueError:
        return None
    if device_time.tzinfo is None:
        return None
    corrected = registry.correct(source_id, device_time)
    record_correction(resource, element, corrected)
    return corrected


class SavedClocks:
    """The clocks the monitor saves, read per source at most every `poll_s`, for a connector
    that corrects many device times as they arrive (the output adjuster, the UWB zones)."""

    def __init__(self, database: AsyncEngine, settings: ClockSettings) -> None:
        self._database = database
        self._settings = settings
        self.registry = ClockRegistry(settings)
        self._read_at: dict[str, float] = {}  # source id -> monotonic time of the last read

    async def refresh(self, source_id: str) -> None:
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
            # trouble shows in the write that follows if it lasts.
            log.warning("clocks.read_failed", extra={"source": source_id, "error": str(exc)})
            return
        self._read_at[source_id] = now
        for source in found:
            self.registry.put(source)

    async def correct(self, source_id: str, device_time: datetime) -> CorrectedTime:
        """`device_time` in true time by the source's saved clock and the correction policy."""
        await self.refresh(source_id)
        return self.registry.correct(source_id, device_time)
