"""The clocks as saved, for code that corrects device times outside the monitor: a device
channel's connector, a pathway step, a registry exporter. Load once, correct many times."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.config import ClockSettings
from devices.clock.correction import CorrectedTime, record_correction
from devices.clock.registry import ClockRegistry
from devices.clock.store import load_hosts, load_sources

__all__ = ["correct_element", "load_registry"]


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
