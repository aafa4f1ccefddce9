"""Reading and writing the clock tables, and reading the samples from the journal.

Every function takes a synchronous SQLAlchemy `Connection` inside the caller's transaction
(the engine's write thread runs them), and never commits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.engine import Connection, Row

from devices.clock.estimator import Estimate
from devices.clock.registry import SourceClock
from devices.clock.tables import ClockCursor, ClockHost, ClockSource
from engine.journal import JournalMessage

__all__ = [
    "HostClock",
    "Sample",
    "journal_samples",
    "load_hosts",
    "load_sources",
    "mark_journalled",
    "read_cursor",
    "save_host",
    "save_sources",
    "write_cursor",
]

CURSOR = "journal"
# Core tables: these functions run on a plain Connection, where rows are tuples, not objects.
_SOURCE = cast(Table, ClockSource.__table__)
_HOST = cast(Table, ClockHost.__table__)


@dataclass(frozen=True, slots=True)
class Sample:
    """One journalled message's timestamps."""

    message_id: int
    channel: str
    sender: str | None
    sent_at: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class HostClock:
    """An engine host against its NTP server, as last checked."""

    node: str
    server: str | None
    offset_s: float | None
    delay_s: float | None
    stratum: int | None
    checked_at: datetime | None
    error: str | None


def read_cursor(connection: Connection) -> int:
    """The last journal id read; on PostgreSQL the row stays locked until the commit, so two
    engine nodes never fold the same messages in twice."""
    query = select(ClockCursor.message_id).where(ClockCursor.name == CURSOR)
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    found = connection.execute(query).scalar_one_or_none()
    if found is None:
        connection.execute(insert(ClockCursor).values(name=CURSOR, message_id=0))
        return 0
    return int(found)


def write_cursor(connection: Connection, message_id: int) -> None:
    connection.execute(
        update(ClockCursor).where(ClockCursor.name == CURSOR).values(message_id=message_id)
    )


def journal_samples(
    connection: Connection, after: int, limit: int
) -> tuple[list[Sample], int, int]:
    """The samples among the next `limit` journal rows after id `after`, the last id read and
    how many rows were read.
    Reprocessed copies carry no sender timestamp (`sent_at` is not copied), so they are no
    samples: their receipt time is the reprocessing, not the sending."""
    rows = connection.execute(
        select(
            JournalMessage.id,
            JournalMessage.channel,
            JournalMessage.sender,
            JournalMessage.sent_at,
            JournalMessage.received_at,
        )
        .where(JournalMessage.id > after)
        .order_by(JournalMessage.id)
        .limit(limit)
    ).all()
    samples = [
        Sample(message_id, channel, sender, sent_at, received_at)
        for message_id, channel, sender, sent_at, received_at in rows
        if sent_at is not None
    ]
    return samples, (rows[-1][0] if rows else after), len(rows)


def load_sources(
    connection: Connection, source_ids: Collection[str] | None = None
) -> list[SourceClock]:
    query = select(_SOURCE).order_by(_SOURCE.c.source_id)
    if source_ids is not None:
        if not source_ids:
            return []
        query = query.where(_SOURCE.c.source_id.in_(sorted(source_ids)))
    return [_from_row(row) for row in connection.execute(query)]


def save_sources(connection: Connection, sources: Iterable[SourceClock]) -> None:
    rows = [_to_row(source) for source in sources]
    if not rows:
        return
    connection.execute(
        delete(ClockSource).where(ClockSource.source_id.in_([r["source_id"] for r in rows]))
    )
    connection.execute(insert(ClockSource), rows)


def mark_journalled(connection: Connection, source_id: str, key: str) -> None:
    connection.execute(
        update(ClockSource).where(ClockSource.source_id == source_id).values(alert_journalled=key)
    )


def save_host(connection: Connection, host: HostClock) -> None:
    connection.execute(delete(ClockHost).where(ClockHost.node == host.node))
    connection.execute(
        insert(ClockHost).values(
            node=host.node,
            server=host.server,
            offset_s=host.offset_s,
            delay_s=host.delay_s,
            stratum=host.stratum,
            checked_at=host.checked_at,
            error=host.error,
        )
    )


def load_hosts(connection: Connection) -> list[HostClock]:
    return [
        HostClock(h.node, h.server, h.offset_s, h.delay_s, h.stratum, h.checked_at, h.error)
        for h in connection.execute(select(_HOST).order_by(_HOST.c.node))
    ]


def _from_row(row: Row[Any]) -> SourceClock:
    status = row.status if row.status in ("ok", "drifting") else "unknown"
    buckets = SourceClock.buckets_from_json(row.buckets)
    return SourceClock(
        source_id=row.source_id,
        channel=row.channel,
        sender=row.sender,
        first_seen=row.first_seen,
        last_seen=row.last_seen,
        samples=row.samples,
        estimate=Estimate(
            offset_s=row.offset_s,
            drift_ppm=row.drift_ppm,
            uncertainty_s=row.uncertainty_s,
            buckets=len(buckets),
            at=row.estimated_at,
        ),
        status=status,  # type: ignore[arg-type]
        alerting=row.alerting,
        crossings=row.crossings,
        alert_journalled=row.alert_journalled,
        buckets=buckets,
    )


def _to_row(source: SourceClock) -> dict[str, object]:
    return {
        "source_id": source.source_id,
        "channel": source.channel,
        "sender": source.sender,
        "first_seen": source.first_seen,
        "last_seen": source.last_seen,
        "samples": source.samples,
        "offset_s": source.estimate.offset_s,
        "drift_ppm": source.estimate.drift_ppm,
        "uncertainty_s": source.estimate.uncertainty_s,
        "estimated_at": source.estimate.at,
        "status": source.status,
        "alerting": source.alerting,
        "crossings": source.crossings,
        "alert_journalled": source.alert_journalled,
        "buckets": source.buckets_json(),
    }
