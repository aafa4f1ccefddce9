"""What the channel workers read and write: queues, processing outcomes, delivery attempts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Table,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import ColumnElement, Exists

from engine.database import execute_many
from engine.journal._tables import (
    ContentKind,
    DeliveryAttempt,
    DeliveryStatus,
    DestinationDelivery,
    JournalMessage,
    MessageContent,
    MessageStatus,
)

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
    sent_at: datetime | None = None  # the sender's own timestamp on the message
    sender: str | None = None  # who stamped it


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
        JournalMessage.sent_at,
        JournalMessage.sender,
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
    execute_many(connection, _STORE_OUTCOME, updates)
    execute_many(
        connection,
        _INSERT_CONTENT,
        [{**row, "kind": ContentKind.TRANSFORMED.value} for row in transformed],
    )
    execute_many(connection, _INSERT_DELIVERIES, deliveries)


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
    execute_many(connection, _MOVE_DELIVERY, delivery_updates)
    execute_many(connection, _INSERT_ATTEMPTS, attempts)
    refresh_message_status(connection, message_ids, now)


def refresh_message_status(
    connection: Connection, message_ids: Sequence[int], now: datetime
) -> None:
    """Derive each message's status from its deliveries once they move."""
    if message_ids:
        ids = sorted(set(message_ids))
        # Two destinations of one message may finish at once (PostgreSQL runs writes
        # concurrently): locking the message rows first makes the second refresh see the
        # first's delivery. SQLite has one writer (and no FOR UPDATE): nothing to lock.
        if connection.dialect.name != "sqlite":
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
