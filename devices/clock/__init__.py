"""Device clocks: every sender's clock offset and drift from its message timestamps, the host's
own offset by NTP, corrections of device times into true time, and alerts when a clock is off
(the certification's "unified clock"). See docs/clocks.md.

Entry points: `greenchannel.subscribers: device-clocks` (the monitor), `greenchannel.migrations:
device_clocks` (its tables), `greenchannel.commands: clocks` and `greenchannel.routers: clocks`
(`GET /api/clocks`).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.config import ClockSettings, clock_settings
from devices.clock.correction import (
    CORRECTION_EXTENSION,
    CorrectedTime,
    correct_time,
    record_correction,
)
from devices.clock.estimator import Bucket, Estimate, EstimatorSettings, add_sample, estimate
from devices.clock.reader import correct_element, load_registry
from devices.clock.registry import AlertEvent, ClockRegistry, SourceClock, source_id_for
from devices.clock.sntp import (
    KissOfDeathError,
    NtpError,
    NtpResponseError,
    NtpResult,
    NtpTimeoutError,
    query_ntp,
)
from engine.database import upgrade_to_head

__all__ = [
    "CORRECTION_EXTENSION",
    "AlertEvent",
    "Bucket",
    "ClockRegistry",
    "ClockSettings",
    "CorrectedTime",
    "Estimate",
    "EstimatorSettings",
    "KissOfDeathError",
    "NtpError",
    "NtpResponseError",
    "NtpResult",
    "NtpTimeoutError",
    "SourceClock",
    "add_sample",
    "clock_settings",
    "correct_element",
    "correct_time",
    "estimate",
    "load_registry",
    "migrate",
    "query_ntp",
    "record_correction",
    "source_id_for",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


async def migrate(engine: AsyncEngine) -> None:
    """Create or upgrade the clock tables (history in `clock_alembic_version`)."""
    await upgrade_to_head(engine, MIGRATIONS_DIR)
