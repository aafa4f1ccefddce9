"""The clock monitor on real SQLite and PostgreSQL: journalled sender timestamps become each
source's clock, the alert is journalled into the alert channel once per crossing (a restart
sends nothing twice), and journal rows without a sender timestamp are read past."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from devices.clock import ClockSettings
from devices.clock import migrate as migrate_clocks
from devices.clock.monitor import ClockMonitor, own_writes
from devices.clock.store import load_sources
from engine.connectors import Inbound, Receipt
from engine.database import create_database_engine, create_sync_engine, migrate
from engine.journal import JournalMessage, journal_inbound

pytestmark = pytest.mark.anyio
CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 26, 8, 0, tzinfo=CST)
SOURCE = "monitor-oru:BSM-6501/ED"


@pytest.fixture
async def sync_engine(database_url: str) -> AsyncIterator[Engine]:
    database = create_database_engine(database_url)
    await migrate(database)
    await migrate_clocks(database)
    await database.dispose()
    engine = create_sync_engine(database.url)
    yield engine
    engine.dispose()


def _monitor(engine: Engine) -> ClockMonitor:
    run_write = own_writes(engine)

    async def accept(channel: str, inbound: Inbound) -> Receipt:
        receipts = await run_write(lambda c: journal_inbound(c, [(channel, inbound)]))
        return receipts[0]

    settings = ClockSettings(min_samples=3, alert_threshold_s=30)
    return ClockMonitor(settings, run_write=run_write, accept=accept, timezone=CST, node="test")


def _journal(engine: Engine, first_minute: int, offsets: list[float], **extra: Any) -> None:
    """Messages from the monitor a minute apart, its clock `offset` ahead, as MLLP journals."""
    items = []
    for n, offset in enumerate(offsets):
        received = START + timedelta(minutes=first_minute + n, seconds=0.3)
        inbound = Inbound(
            raw=b"MSH|...",
            media_type="x-application/hl7-v2+er7",
            received_at=received,
            origin="mllp://10.2.0.14:51022",
            sent_at=(received + timedelta(seconds=offset - 0.3)).replace(microsecond=0),
            sender="BSM-6501/ED",
            **extra,
        )
        items.append(("monitor-oru", inbound))
    with engine.begin() as connection:
        journal_inbound(connection, items)


def _alerts(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(JournalMessage.dedup_key)
            .where(JournalMessage.channel == "device-clock-alerts")
            .order_by(JournalMessage.id)
        )
        return [key for (key,) in rows]


async def test_a_fast_clock_is_found_and_alerted_once_across_a_restart(
    sync_engine: Engine,
) -> None:
    _journal(sync_engine, 0, [120.0] * 6)
    await _monitor(sync_engine).absorb()

    with sync_engine.connect() as connection:
        (source,) = load_sources(connection)
    assert source.source_id == SOURCE and source.samples == 6
    assert source.status == "drifting"
    assert source.estimate.offset_s is not None and abs(source.estimate.offset_s - 120) <= 1
    assert _alerts(sync_engine) == [f"clock/{SOURCE}/1/raised"]

    # A restart: the new monitor reads the saved state, more samples, no second alert.
    restarted = _monitor(sync_engine)
    _journal(sync_engine, 6, [120.0] * 2)
    await restarted.absorb()
    assert _alerts(sync_engine) == [f"clock/{SOURCE}/1/raised"]

    # The clock is set right: the alert is resolved once.
    _journal(sync_engine, 8, [0.0] * 5)
    await restarted.absorb()
    assert _alerts(sync_engine) == [f"clock/{SOURCE}/1/raised", f"clock/{SOURCE}/1/resolved"]
    with sync_engine.connect() as connection:
        (source,) = load_sources(connection)
    assert source.status == "ok" and source.samples == 13


async def test_messages_without_a_sender_time_are_read_past(sync_engine: Engine) -> None:
    with sync_engine.begin() as connection:
        journal_inbound(
            connection,
            [("his-adt", Inbound(raw=b"x", media_type="text/plain", received_at=START,
                                  origin="file://in"))],
        )  # fmt: skip
    monitor = _monitor(sync_engine)
    assert await monitor.absorb() == 1
    assert await monitor.absorb() == 0
    with sync_engine.connect() as connection:
        assert load_sources(connection) == []
