"""The message journal: every message in and out, with its raw bytes, status and delivery attempts.

This module owns the journal tables and every query on them. Sessions are passed in by the
caller, who owns the transaction; nothing here commits except `JournalWriter`, the group-commit
writer that makes "ACK after journal" cheap.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column, relationship
from sqlalchemy.sql.expression import ColumnElement, Exists

from engine.connectors import Inbound, Receipt
from engine.database import Base, WriteThread

__all__ = [
    "DeliveryAttempt",
    "DeliveryStatus",
    "DestinationDelivery",
    "JournalMessage",
    "JournalWriter",
    "MessageContent",
    "MessageStatus",
    "MessageSummary",
]

log = logging.getLogger(__name__)

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class MessageStatus(enum.StrEnum):
    """Where a message is in its channel."""

    RECEIVED = "received"  # journalled, not yet filtered or transformed
    FILTERED = "filtered"  # the channel filter dropped it on purpose
    TRANSFORMED = "transformed"  # transformed; deliveries pending
    QUEUED = "queued"  # a delivery failed transiently and waits for its retry
    SENT = "sent"  # every delivery done
    ERROR = "error"  # unparseable, unmappable, or a delivery rejected: a person must look


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FILTERED = "filtered"
    ERROR = "error"


class JournalMessage(Base):
    """One received message's metadata; its bytes are in `MessageContent`.

    Status moves several times per message; keeping the bytes in another table means those
    updates rewrite a small row, not kilobytes of content.
    """

    __tablename__ = "journal_message"
    __table_args__ = (
        UniqueConstraint("channel", "dedup_key", name="uq_journal_message_dedup"),
        Index("ix_journal_message_channel_status", "channel", "status", "id"),
        Index("ix_journal_message_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    origin: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    charset: Mapped[str | None] = mapped_column(String(40))
    dedup_key: Mapped[str | None] = mapped_column(String(300))
    correlation_id: Mapped[str | None] = mapped_column(String(200), index=True)
    reprocess_of: Mapped[int | None] = mapped_column(BigId)
    size_bytes: Mapped[int] = mapped_column(Integer)
    transformed_media_type: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    content_pruned: Mapped[bool] = mapped_column(default=False)

    deliveries: Mapped[list[DestinationDelivery]] = relationship(
        back_populates="message", lazy="raise", order_by="DestinationDelivery.id"
    )


class ContentKind(enum.StrEnum):
    RAW = "raw"  # exactly what arrived; the unit of reprocessing
    TRANSFORMED = "transformed"  # what the channel's mapping made of it


class MessageContent(Base):
    """The bytes of a message: as received, and as transformed. Pruned separately."""

    __tablename__ = "message_content"

    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("journal_message.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    data: Mapped[bytes]


class DestinationDelivery(Base):
    """One message's place in one destination's queue."""

    __tablename__ = "destination_delivery"
    __table_args__ = (
        Index("ix_delivery_queue", "channel", "destination", "status", "lane", "id"),
        Index("ix_delivery_message", "message_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("journal_message.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64))
    lane: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Only set when the destination has its own transformer; otherwise the message's is sent.
    payload: Mapped[bytes | None]
    payload_media_type: Mapped[str | None] = mapped_column(String(100))

    message: Mapped[JournalMessage] = relationship(back_populates="deliveries", lazy="raise")
    attempt_rows: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="delivery", lazy="raise", order_by="DeliveryAttempt.id"
    )


class DeliveryAttempt(Base):
    """One try to deliver: when, the outcome, and what the peer answered."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("destination_delivery.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))  # sent | retry | rejected
    detail: Mapped[str | None] = mapped_column(Text)
    reply: Mapped[bytes | None]

    delivery: Mapped[DestinationDelivery] = relationship(
        back_populates="attempt_rows", lazy="raise"
    )


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A journal row without its content, for listings."""

    id: int
    channel: str
    status: str
    received_at: datetime
    origin: str
    media_type: str
    correlation_id: str | None
    size_bytes: int
    error: str | None


# ---------------------------------------------------------------------------------------------
# The group-commit writer
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    channel: str
    inbound: Inbound
    future: asyncio.Future[Receipt]


class JournalWriter:
    """Commits inbound messages in groups and answers each sender once its row is durable.

    Sources await `accept(channel, inbound)`; one writer task drains whatever is waiting (up to
    `batch_max`) into a single transaction, so eight busy connections cost one commit, not eight.
    The transaction runs on the engine's write thread: one thread hop per batch instead of one
    per statement. While a batch commits, the next one gathers. The queue is bounded: when it
    is full, `accept` waits and the source stops reading.
    """

    def __init__(
        self,
        writes: WriteThread,
        *,
        batch_max: int = 500,
        queue_max: int = 10_000,
        on_committed: Callable[[set[str]], None] | None = None,
        concurrency: int = 1,
    ) -> None:
        self._writes = writes
        # More than one batch in flight only helps a database that commits concurrently
        # (PostgreSQL); messages of one connection stay ordered since each waits for its ACK.
        self._concurrency = concurrency
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_max)
        self._batch_max = batch_max
        self._on_committed = on_committed

    async def accept(self, channel: str, inbound: Inbound) -> Receipt:
        """Journal one message; returns after the commit."""
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(channel, inbound, future))
        return await future

    async def run(self) -> None:
        """Write batches until cancelled; anything still waiting is failed, not dropped silently."""
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._concurrency):
                    group.create_task(self._drain())
        finally:
            waiting: list[_Pending] = []
            while not self._queue.empty():
                waiting.append(self._queue.get_nowait())
            self._fail(waiting, RuntimeError("engine stopping"))

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            items = [(p.channel, p.inbound) for p in batch]
            try:
                receipts = await self._write(items)
            except asyncio.CancelledError:
                self._fail(batch, RuntimeError("engine stopping"))
                raise
            except Exception as exc:
                # The senders get no ACK and will resend; nothing was committed.
                log.error("journal.write_failed", extra={"batch": len(batch)}, exc_info=True)
                self._fail(batch, exc)
                continue
            for pending, receipt in zip(batch, receipts, strict=True):
                if not pending.future.done():
                    pending.future.set_result(receipt)
            if self._on_committed is not None:
                self._on_committed({p.channel for p in batch})

    async def _write(self, items: list[tuple[str, Inbound]]) -> list[Receipt]:
        try:
            return await self._writes.run(
                lambda connection: journal_inbound(connection, items), urgent=True
            )
        except IntegrityError:
            # Another engine node journalled one of these dedup keys between our look-up and
            # our insert; a second pass sees its row and answers "duplicate".
            return await self._writes.run(
                lambda connection: journal_inbound(connection, items), urgent=True
            )

    @staticmethod
    def _fail(batch: Sequence[_Pending], exc: BaseException) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(exc)


def journal_inbound(connection: Connection, items: Sequence[tuple[str, Inbound]]) -> list[Receipt]:
    """Insert new messages, recognise resends by (channel, dedup_key); one receipt per item."""
    keys = {(channel, inbound.dedup_key) for channel, inbound in items if inbound.dedup_key}
    known: dict[tuple[str, str], int] = {}
    if keys:
        channels = sorted({c for c, _ in keys})
        dedup_keys = [k for _, k in keys]
        for chunk_start in range(0, len(dedup_keys), 500):
            rows = connection.execute(
                _FIND_RESENDS,
                {"channels": channels, "keys": dedup_keys[chunk_start : chunk_start + 500]},
            )
            for row_channel, row_key, message_id in rows:
                if row_key is not None:
                    known[(row_channel, row_key)] = message_id

    receipts: list[Receipt | None] = []
    new_rows: list[dict[str, Any]] = []
    new_positions: list[int] = []
    first_in_batch: dict[tuple[str, str], int] = {}
    duplicates_in_batch: list[tuple[int, tuple[str, str]]] = []
    for position, (channel, inbound) in enumerate(items):
        key: tuple[str, str] | None = (
            (channel, inbound.dedup_key) if inbound.dedup_key is not None else None
        )
        if key is not None and key in known:
            receipts.append(Receipt(known[key], duplicate=True))
            continue
        if key is not None and key in first_in_batch:
            receipts.append(None)
            duplicates_in_batch.append((position, key))
            continue
        if key is not None:
            first_in_batch[key] = position
        receipts.append(None)
        new_positions.append(position)
        new_rows.append(_row_for(channel, inbound))

    if new_rows:
        result = connection.execute(_INSERT_MESSAGES, new_rows)
        contents = []
        for position, message_id in zip(new_positions, result.scalars(), strict=True):
            receipts[position] = Receipt(message_id, duplicate=False)
            contents.append(
                {"message_id": message_id, "kind": ContentKind.RAW, "data": items[position][1].raw}
            )
        connection.execute(_INSERT_CONTENT, contents)
    for position, key in duplicates_in_batch:
        first = receipts[first_in_batch[key]]
        assert first is not None
        receipts[position] = Receipt(first.message_id, duplicate=True)
    return [r for r in receipts if r is not None]


def _row_for(channel: str, inbound: Inbound) -> dict[str, Any]:
    problem = inbound.problem
    return {
        "channel": channel,
        "status": MessageStatus.ERROR if problem else MessageStatus.RECEIVED,
        "received_at": inbound.received_at,
        "processed_at": inbound.received_at if problem else None,
        "origin": inbound.origin[:200],
        "media_type": inbound.media_type[:100],
        "charset": inbound.charset,
        "dedup_key": inbound.dedup_key[:300] if inbound.dedup_key else None,
        "correlation_id": inbound.correlation_id[:200] if inbound.correlation_id else None,
        "reprocess_of": None,
        "size_bytes": len(inbound.raw),
        "transformed_media_type": None,
        "error": f"{type(problem).__name__}: {problem}" if problem else None,
        "content_pruned": False,
    }


# ---------------------------------------------------------------------------------------------
# Queries used by the channel workers
# ---------------------------------------------------------------------------------------------


_transformed = aliased(MessageContent)
_raw = aliased(MessageContent)


@dataclass(frozen=True, slots=True)
class QueuedDelivery:
    """A delivery waiting in a destination's queue, with the payload to send."""

    id: int
    message_id: int
    attempts: int
    next_attempt_at: datetime | None
    payload: bytes | None
    media_type: str | None
    received_at: datetime  # of the message, for delivery latency


def received_batch(
    connection: Connection, channel: str, limit: int
) -> list[tuple[int, bytes | None, str, str | None]]:
    """The oldest messages still waiting to be filtered and transformed, in arrival order:
    (id, raw bytes, media type, charset)."""
    rows = connection.execute(_RECEIVED, {"channel": channel, "limit": limit})
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def queued_deliveries(
    connection: Connection, channel: str, destination: str, lane: int, limit: int
) -> list[QueuedDelivery]:
    """The head of one lane of a destination queue, oldest first."""
    rows = connection.execute(
        _QUEUED,
        {"channel": channel, "destination": destination, "lane": lane, "limit": limit},
    )
    return [QueuedDelivery(*row) for row in rows]


_RECEIVED = (
    select(
        JournalMessage.id,
        _raw.data,
        JournalMessage.media_type,
        JournalMessage.charset,
    )
    .outerjoin(_raw, (_raw.message_id == JournalMessage.id) & (_raw.kind == ContentKind.RAW.value))
    .where(
        JournalMessage.channel == bindparam("channel"),
        JournalMessage.status == MessageStatus.RECEIVED.value,
    )
    .order_by(JournalMessage.id)
    .limit(bindparam("limit"))
)
_QUEUED = (
    select(
        DestinationDelivery.id,
        DestinationDelivery.message_id,
        DestinationDelivery.attempts,
        DestinationDelivery.next_attempt_at,
        func.coalesce(DestinationDelivery.payload, _transformed.data, _raw.data),
        func.coalesce(
            DestinationDelivery.payload_media_type, JournalMessage.transformed_media_type
        ),
        JournalMessage.received_at,
    )
    .join(JournalMessage, JournalMessage.id == DestinationDelivery.message_id)
    .outerjoin(
        _transformed,
        (_transformed.message_id == DestinationDelivery.message_id)
        & (_transformed.kind == ContentKind.TRANSFORMED.value),
    )
    .outerjoin(
        _raw,
        (_raw.message_id == DestinationDelivery.message_id) & (_raw.kind == ContentKind.RAW.value),
    )
    .where(
        DestinationDelivery.channel == bindparam("channel"),
        DestinationDelivery.destination == bindparam("destination"),
        DestinationDelivery.lane == bindparam("lane"),
        DestinationDelivery.status == DeliveryStatus.QUEUED.value,
    )
    .order_by(DestinationDelivery.id)
    .limit(bindparam("limit"))
)


def store_outcomes(
    connection: Connection,
    updates: list[dict[str, Any]],
    deliveries: list[dict[str, Any]],
    transformed: list[dict[str, Any]],
) -> None:
    """Record what processing decided for a batch: statuses, transformed content, deliveries.

    `transformed` rows have message_id and data.
    """
    connection.execute(_STORE_OUTCOME, updates)
    if transformed:
        connection.execute(
            _INSERT_CONTENT,
            [{**row, "kind": ContentKind.TRANSFORMED.value} for row in transformed],
        )
    if deliveries:
        connection.execute(_INSERT_DELIVERIES, deliveries)


def record_attempts(
    connection: Connection,
    delivery_updates: list[dict[str, Any]],
    attempts: list[dict[str, Any]],
    message_ids: Sequence[int],
    now: datetime,
) -> None:
    """Record delivery attempts, move the deliveries, and derive their messages' status.

    Each of `delivery_updates` has delivery_id, status, attempts, sent_at, last_error and
    next_attempt_at.
    """
    connection.execute(_MOVE_DELIVERY, delivery_updates)
    connection.execute(_INSERT_ATTEMPTS, attempts)
    refresh_message_status(connection, message_ids, now)


def refresh_message_status(
    connection: Connection, message_ids: Sequence[int], now: datetime
) -> None:
    """Derive each message's status from its deliveries once they move."""
    if message_ids:
        ids = sorted(set(message_ids))
        # Two destinations of one message may finish at once (PostgreSQL runs writes
        # concurrently): locking the message rows first makes the second refresh see the
        # first's delivery. SQLite has one writer and renders no FOR UPDATE.
        connection.execute(_LOCK_MESSAGES, {"ids": ids})
        connection.execute(_REFRESH_STATUS, {"ids": ids, "now": now})


# Statements of the hot paths, built once: building them per call cost more than running them.


def _any_delivery(status: str, *extra: ColumnElement[bool]) -> Exists:
    return exists().where(
        DestinationDelivery.message_id == JournalMessage.id,
        DestinationDelivery.status == status,
        *extra,
    )


_MESSAGE = JournalMessage.__table__
_DELIVERY = DestinationDelivery.__table__
assert isinstance(_MESSAGE, Table) and isinstance(_DELIVERY, Table)

_FIND_RESENDS = select(JournalMessage.channel, JournalMessage.dedup_key, JournalMessage.id).where(
    JournalMessage.channel.in_(bindparam("channels", expanding=True)),
    JournalMessage.dedup_key.in_(bindparam("keys", expanding=True)),
)
_INSERT_MESSAGES = insert(JournalMessage).returning(JournalMessage.id, sort_by_parameter_order=True)
_STORE_OUTCOME = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("message_id"))
    .where(_MESSAGE.c.status == MessageStatus.RECEIVED.value)
    .values(
        status=bindparam("status"),
        error=bindparam("error"),
        transformed_media_type=bindparam("transformed_media_type"),
        processed_at=bindparam("processed_at"),
    )
)
_INSERT_DELIVERIES = insert(DestinationDelivery)
_INSERT_CONTENT = insert(MessageContent)
_MOVE_DELIVERY = (
    update(_DELIVERY)
    .where(_DELIVERY.c.id == bindparam("delivery_id"))
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        sent_at=bindparam("sent_at"),
        last_error=bindparam("last_error"),
        next_attempt_at=bindparam("next_attempt_at"),
    )
)
_INSERT_ATTEMPTS = insert(DeliveryAttempt)
_LOCK_MESSAGES = (
    select(JournalMessage.id)
    .where(JournalMessage.id.in_(bindparam("ids", expanding=True)))
    .order_by(JournalMessage.id)
    .with_for_update()
)
_REFRESH_STATUS = (
    update(JournalMessage)
    .where(JournalMessage.id.in_(bindparam("ids", expanding=True)))
    .values(
        status=case(
            (_any_delivery(DeliveryStatus.ERROR), MessageStatus.ERROR.value),
            (
                _any_delivery(DeliveryStatus.QUEUED, DestinationDelivery.attempts > 0),
                MessageStatus.QUEUED.value,
            ),
            (_any_delivery(DeliveryStatus.QUEUED), MessageStatus.TRANSFORMED.value),
            else_=MessageStatus.SENT.value,
        ),
        error=case(
            (
                _any_delivery(DeliveryStatus.ERROR),
                select(DestinationDelivery.last_error)
                .where(
                    DestinationDelivery.message_id == JournalMessage.id,
                    DestinationDelivery.status == DeliveryStatus.ERROR,
                )
                .order_by(DestinationDelivery.id)
                .limit(1)
                .scalar_subquery(),
            ),
            else_=JournalMessage.error,
        ),
        processed_at=bindparam("now"),
    )
)


# ---------------------------------------------------------------------------------------------
# Queries used by the API, the CLI, reprocessing and pruning
# ---------------------------------------------------------------------------------------------


def _summary(row: Any) -> MessageSummary:
    return MessageSummary(
        id=row.id,
        channel=row.channel,
        status=row.status,
        received_at=row.received_at,
        origin=row.origin,
        media_type=row.media_type,
        correlation_id=row.correlation_id,
        size_bytes=row.size_bytes,
        error=row.error,
    )


async def list_messages(
    session: AsyncSession,
    *,
    channel: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[MessageSummary]:
    """Newest first, filtered; page with `before_id`."""
    query = select(
        JournalMessage.id,
        JournalMessage.channel,
        JournalMessage.status,
        JournalMessage.received_at,
        JournalMessage.origin,
        JournalMessage.media_type,
        JournalMessage.correlation_id,
        JournalMessage.size_bytes,
        JournalMessage.error,
    )
    conditions = _filters(channel, status, since, until)
    if before_id is not None:
        conditions.append(JournalMessage.id < before_id)
    rows = await session.execute(
        query.where(*conditions).order_by(JournalMessage.id.desc()).limit(limit)
    )
    return [_summary(row) for row in rows]


def _filters(
    channel: str | None, status: str | None, since: datetime | None, until: datetime | None
) -> list[Any]:
    conditions: list[Any] = []
    if channel:
        conditions.append(JournalMessage.channel == channel)
    if status:
        conditions.append(JournalMessage.status == status)
    if since:
        conditions.append(JournalMessage.received_at >= since)
    if until:
        conditions.append(JournalMessage.received_at < until)
    return conditions


async def matching_message_ids(
    session: AsyncSession,
    *,
    channel: str | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[int]:
    """Ids of the messages a bulk operation applies to, oldest first."""
    rows = await session.scalars(
        select(JournalMessage.id)
        .where(*_filters(channel, status, since, until))
        .order_by(JournalMessage.id)
    )
    return list(rows)


@dataclass(frozen=True, slots=True)
class MessageDetail:
    """One message in full: content, deliveries and their attempts."""

    message: JournalMessage
    raw: bytes | None
    transformed: bytes | None
    deliveries: list[DestinationDelivery]
    attempts: dict[int, list[DeliveryAttempt]]


async def get_message(session: AsyncSession, message_id: int) -> MessageDetail | None:
    message = await session.get(JournalMessage, message_id)
    if message is None:
        return None
    deliveries = list(
        await session.scalars(
            select(DestinationDelivery)
            .where(DestinationDelivery.message_id == message_id)
            .order_by(DestinationDelivery.id)
        )
    )
    attempts: dict[int, list[DeliveryAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in await session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    content = await _contents(session, message_id)
    return MessageDetail(
        message,
        content.get(ContentKind.RAW),
        content.get(ContentKind.TRANSFORMED),
        deliveries,
        attempts,
    )


async def _contents(session: AsyncSession, message_id: int) -> dict[str, bytes]:
    rows = await session.execute(
        select(MessageContent.kind, MessageContent.data).where(
            MessageContent.message_id == message_id
        )
    )
    return {kind: data for kind, data in rows}


class ContentPrunedError(LookupError):
    """The message's content was pruned by retention and cannot be reprocessed."""


async def reprocess(session: AsyncSession, message_id: int, now: datetime) -> int | None:
    """Journal a copy of the message's raw content as a new message; returns its id.

    The original keeps its history; the copy runs through today's filter and mapping.
    """
    original = await session.get(JournalMessage, message_id)
    if original is None:
        return None
    raw = (await _contents(session, message_id)).get(ContentKind.RAW)
    if raw is None:
        raise ContentPrunedError(f"message {message_id} has had its content pruned")
    result = await session.execute(
        insert(JournalMessage).returning(JournalMessage.id),
        [
            {
                "channel": original.channel,
                "status": MessageStatus.RECEIVED,
                "received_at": now,
                "processed_at": None,
                "origin": f"reprocess:{message_id}",
                "media_type": original.media_type,
                "charset": original.charset,
                "dedup_key": None,
                "correlation_id": original.correlation_id,
                "reprocess_of": message_id,
                "size_bytes": original.size_bytes,
                "transformed_media_type": None,
                "error": None,
                "content_pruned": False,
            }
        ],
    )
    new_id = int(result.scalar_one())
    await session.execute(
        insert(MessageContent), [{"message_id": new_id, "kind": ContentKind.RAW, "data": raw}]
    )
    return new_id


# Never pruned: anything still moving or waiting for a person.
_PRUNABLE = (MessageStatus.SENT.value, MessageStatus.FILTERED.value)


async def _finished_before(
    session: AsyncSession, older_than: datetime, limit: int, *extra: ColumnElement[bool]
) -> list[int]:
    """Sent or filtered messages received before `older_than`: the only prunable ones."""
    rows = await session.scalars(
        select(JournalMessage.id)
        .where(
            JournalMessage.received_at < older_than,
            JournalMessage.status.in_(_PRUNABLE),
            *extra,
        )
        .limit(limit)
    )
    return list(rows)


async def prune_content(session: AsyncSession, older_than: datetime, limit: int) -> int:
    """Drop raw and transformed content of finished messages; keep their metadata."""
    ids = await _finished_before(
        session, older_than, limit, JournalMessage.content_pruned.is_(False)
    )
    if not ids:
        return 0
    await session.execute(delete(MessageContent).where(MessageContent.message_id.in_(ids)))
    await session.execute(
        update(JournalMessage).where(JournalMessage.id.in_(ids)).values(content_pruned=True)
    )
    await session.execute(
        update(DestinationDelivery)
        .where(DestinationDelivery.message_id.in_(ids))
        .values(payload=None)
    )
    delivery_ids = select(DestinationDelivery.id).where(DestinationDelivery.message_id.in_(ids))
    await session.execute(
        update(DeliveryAttempt)
        .where(DeliveryAttempt.delivery_id.in_(delivery_ids))
        .values(reply=None)
    )
    return len(ids)


async def prune_metadata(session: AsyncSession, older_than: datetime, limit: int) -> int:
    """Delete finished messages entirely, with their deliveries and attempts."""
    ids = await _finished_before(session, older_than, limit)
    if not ids:
        return 0
    delivery_ids = select(DestinationDelivery.id).where(DestinationDelivery.message_id.in_(ids))
    await session.execute(
        delete(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(delivery_ids))
    )
    await session.execute(
        delete(DestinationDelivery).where(DestinationDelivery.message_id.in_(ids))
    )
    await session.execute(delete(MessageContent).where(MessageContent.message_id.in_(ids)))
    await session.execute(delete(JournalMessage).where(JournalMessage.id.in_(ids)))
    return len(ids)


async def count_by_status(session: AsyncSession) -> dict[tuple[str, str], int]:
    """(channel, status) → number of messages, for statistics that survive restarts."""
    rows = await session.execute(
        select(JournalMessage.channel, JournalMessage.status, func.count()).group_by(
            JournalMessage.channel, JournalMessage.status
        )
    )
    return {(channel, status): count for channel, status, count in rows}


async def count_deliveries_by_status(
    session: AsyncSession,
) -> dict[tuple[str, str, str], int]:
    """(channel, destination, status) → number of deliveries."""
    rows = await session.execute(
        select(
            DestinationDelivery.channel,
            DestinationDelivery.destination,
            DestinationDelivery.status,
            func.count(),
        ).group_by(
            DestinationDelivery.channel, DestinationDelivery.destination, DestinationDelivery.status
        )
    )
    return {(c, d, s): n for c, d, s, n in rows}
