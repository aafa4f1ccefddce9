"""What people do with the journal: list, show, reprocess, prune and count messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.expression import ColumnElement

from engine.journal._tables import (
    ContentKind,
    DeliveryAttempt,
    DestinationDelivery,
    JournalMessage,
    MessageContent,
    MessageStatus,
    MessageSummary,
)


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
                # Who sent it, still (output adjusters correct by sender), but not `sent_at`:
                # a copy is no new sample of the sender's clock.
                "sender": original.sender,
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
