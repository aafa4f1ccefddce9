"""The group-commit writer: inbound messages journalled in batches, senders answered after."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    bindparam,
    insert,
    select,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from engine.connectors import Inbound, Receipt
from engine.database import WriteThread
from engine.journal._tables import ContentKind, JournalMessage, MessageContent, MessageStatus

log = logging.getLogger(__name__)


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


_FIND_RESENDS = select(JournalMessage.channel, JournalMessage.dedup_key, JournalMessage.id).where(
    JournalMessage.channel.in_(bindparam("channels", expanding=True)),
    JournalMessage.dedup_key.in_(bindparam("keys", expanding=True)),
)
_INSERT_MESSAGES = insert(JournalMessage).returning(JournalMessage.id, sort_by_parameter_order=True)
_INSERT_CONTENT = insert(MessageContent)
