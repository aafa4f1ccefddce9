"""The group-commit writer: inbound messages journalled in batches, senders answered after."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    String,
    Table,
    bindparam,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError

from engine.connectors import Inbound, Receipt
from engine.database import WriteThread, driver_cursor, execute_many
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
    """Insert new messages, recognise resends by (channel, dedup_key); one receipt per item.

    Messages with a dedup key go in with one `INSERT ... ON CONFLICT DO NOTHING RETURNING`:
    a resend is a row the insert skips, looked up afterwards. Resends are rare, so the common
    batch costs one statement for the messages instead of a look-up and an insert (a round
    trip less on PostgreSQL, whose journal commits the senders wait for).
    """
    receipts: list[Receipt | None] = [None] * len(items)
    keyed: dict[tuple[str, str], int] = {}  # first position of each dedup key in the batch
    keyed_rows: list[dict[str, Any]] = []
    repeats: list[tuple[int, tuple[str, str]]] = []
    plain_rows: list[dict[str, Any]] = []
    plain_positions: list[int] = []
    for position, (channel, inbound) in enumerate(items):
        row = _row_for(channel, inbound)
        dedup_key = row["dedup_key"]
        if dedup_key is None:
            plain_rows.append(row)
            plain_positions.append(position)
            continue
        key = (channel, dedup_key)
        if key in keyed:
            repeats.append((position, key))
            continue
        keyed[key] = position
        keyed_rows.append(row)

    new: list[tuple[int, int]] = []  # (position, message id) whose raw content is to insert
    if keyed_rows:
        content_written = connection.dialect.name == "postgresql"
        if content_written:
            # The messages and their raw content in one statement: a round trip less of the
            # three a batch costs (insert, content, commit) while the senders wait.
            raws = [items[position][1].raw for position in keyed.values()]
            inserted = _insert_keyed_with_content(connection, keyed_rows, raws)
        else:
            inserted = _insert_keyed_on_driver(connection, keyed_rows)
        resent = {key: position for key, position in keyed.items() if key not in inserted}
        known = _existing(connection, list(resent)) if resent else {}
        for key, position in keyed.items():
            if key in inserted:
                if not content_written:
                    new.append((position, inserted[key]))
                receipts[position] = Receipt(inserted[key], duplicate=False)
            elif key in known:
                receipts[position] = Receipt(known[key], duplicate=True)
            else:
                # Skipped by the insert, yet not there: a row of another transaction that
                # has since rolled back. No ACK; the sender's resend finds a clean slate.
                raise RuntimeError("a message's dedup key conflicted with no committed row")
    if plain_rows:
        result = connection.execute(_INSERT_MESSAGES, plain_rows)
        for position, message_id in zip(plain_positions, result.scalars(), strict=True):
            new.append((position, message_id))
            receipts[position] = Receipt(message_id, duplicate=False)
    raw = ContentKind.RAW.value
    execute_many(
        connection,
        _INSERT_CONTENT,
        [
            {"message_id": message_id, "kind": raw, "data": items[position][1].raw}
            for position, message_id in new
        ],
    )
    for position, key in repeats:
        first = receipts[keyed[key]]
        assert first is not None
        receipts[position] = Receipt(first.message_id, duplicate=True)
    return [r for r in receipts if r is not None]


def _existing(connection: Connection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """The ids of the journalled messages with these (channel, dedup key)s."""
    found: dict[tuple[str, str], int] = {}
    wanted = set(keys)
    channels = sorted({channel for channel, _ in keys})
    dedup_keys = [dedup_key for _, dedup_key in keys]
    for chunk_start in range(0, len(dedup_keys), 500):
        rows = connection.execute(
            _FIND_RESENDS,
            {"channels": channels, "keys": dedup_keys[chunk_start : chunk_start + 500]},
        )
        for row_channel, row_key, message_id in rows:
            if row_key is not None and (row_channel, row_key) in wanted:
                found[(row_channel, row_key)] = message_id
    return found


def _insert_keyed_with_content(
    connection: Connection, rows: list[dict[str, Any]], raws: list[bytes]
) -> dict[tuple[str, str], int]:
    """PostgreSQL: insert the messages (skipping resends, as `_insert_keyed_on_driver`) and
    the raw content of those inserted, in one statement; the new ids by (channel, dedup key).
    A batch of up to `_VALUES_ROWS` is bound value by value, a larger one as arrays."""
    names = tuple(rows[0])
    kind = str(ContentKind.RAW)
    if len(rows) <= _VALUES_ROWS:
        values: list[Any] = []
        for row, raw in zip(rows, raws, strict=True):
            values.extend([row[name] for name in names])
            values.append(raw)
        values.append(kind)
        sql = _keyed_with_content_sql(names, len(rows), connection.dialect)
        result = connection.exec_driver_sql(sql, tuple(values))
    else:
        parameters: dict[str, Any] = {name: [row[name] for row in rows] for name in names}
        parameters["raw"], parameters["kind"] = raws, kind
        result = connection.exec_driver_sql(
            _keyed_with_content_sql(names, None, connection.dialect), parameters
        )
    return {(row_channel, row_key): message_id for message_id, row_channel, row_key in result}


@lru_cache(maxsize=8)
def _keyed_with_content_sql(names: tuple[str, ...], rows: int | None, dialect: Dialect) -> str:
    """The statement for `rows` rows bound value by value (a VALUES list), or, with None, for
    any number bound as one array per column (`unnest`)."""
    table = JournalMessage.__table__
    assert isinstance(table, Table)

    def sql_type(name: str) -> str:
        column_type = table.c[name].type
        # TEXT, not VARCHAR(n): a cast to VARCHAR(n) would cut where the insert refuses
        return "TEXT" if isinstance(column_type, String) else column_type.compile(dialect=dialect)

    columns = ", ".join(names)
    if rows is not None:
        row = "(" + ", ".join([*(f"%b::{sql_type(name)}" for name in names), "%b::BYTEA"]) + ")"
        incoming = f"incoming ({columns}, raw) AS (VALUES {', '.join([row] * rows)})"
        kind = "%s"
    else:
        arrays = ", ".join(f"%({name})b::{sql_type(name)}[]" for name in names)
        incoming = (
            f"incoming AS (SELECT * FROM unnest({arrays}, %(raw)b::BYTEA[])"
            f" AS incoming({columns}, raw))"
        )
        kind = "%(kind)s"
    return (
        f"WITH {incoming},"
        f" inserted AS (INSERT INTO {table.name} ({columns}) SELECT {columns} FROM incoming"
        " ON CONFLICT (channel, dedup_key) DO NOTHING RETURNING id, channel, dedup_key),"
        f" content AS (INSERT INTO {MessageContent.__tablename__} (message_id, kind, data)"
        f" SELECT inserted.id, {kind}, incoming.raw"
        " FROM inserted JOIN incoming USING (channel, dedup_key))"
        " SELECT id, channel, dedup_key FROM inserted"
    )


def _insert_keyed_on_driver(
    connection: Connection, rows: list[dict[str, Any]]
) -> dict[tuple[str, str], int]:
    """SQLite: insert the messages (skipping resends, whose dedup key is taken) with one
    multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING` on the driver's cursor, the values
    already in its form; the new ids by (channel, dedup key). Through `Connection.execute`
    SQLAlchemy's work on each row cost the write thread more than SQLite's own."""
    names = tuple(rows[0])
    processors = _driver_forms(connection.dialect, names)
    inserted: dict[tuple[str, str], int] = {}
    with driver_cursor(connection) as cursor:
        for start in range(0, len(rows), _DRIVER_ROWS):
            chunk = rows[start : start + _DRIVER_ROWS]
            values = [
                row[name] if process is None else process(row[name])
                for row in chunk
                for name, process in zip(names, processors, strict=True)
            ]
            cursor.execute(_keyed_values_sql(names, len(chunk)), values)
            for message_id, channel, dedup_key in cursor.fetchall():
                inserted[(channel, dedup_key)] = message_id
    return inserted


@lru_cache(maxsize=8)
def _driver_forms(dialect: Dialect, names: tuple[str, ...]) -> list[Callable[[Any], Any] | None]:
    """The dialect's bind processor of each journal_message column in `names`, or None (built
    once, not at every batch)."""
    table = JournalMessage.__table__
    assert isinstance(table, Table)
    return [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names]


@lru_cache(maxsize=64)
def _keyed_values_sql(names: tuple[str, ...], count: int) -> str:
    """The SQLite insert of `count` messages with these columns (one statement each count)."""
    placeholders = "(" + ", ".join("?" * len(names)) + ")"
    return (
        f"INSERT INTO {JournalMessage.__tablename__} ({', '.join(names)})"
        f" VALUES {', '.join([placeholders] * count)}"
        " ON CONFLICT (channel, dedup_key) DO NOTHING RETURNING id, channel, dedup_key"
    )


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
        "sent_at": inbound.sent_at,
        "sender": inbound.sender[:200] if inbound.sender else None,
    }


_FIND_RESENDS = select(JournalMessage.channel, JournalMessage.dedup_key, JournalMessage.id).where(
    JournalMessage.channel.in_(bindparam("channels", expanding=True)),
    JournalMessage.dedup_key.in_(bindparam("keys", expanding=True)),
)
_INSERT_MESSAGES = insert(JournalMessage).returning(JournalMessage.id, sort_by_parameter_order=True)
_INSERT_CONTENT = insert(MessageContent)
# Rows per statement of `_insert_keyed_on_driver`: 16 columns each, well under SQLite's limit
# of 32,766 parameters.
_DRIVER_ROWS = 500
# Batches of up to this many messages are bound value by value on PostgreSQL: psycopg writes a
# scalar in C but walks an array in Python, three quarters of the statement's CPU for two
# messages; it converts a statement's placeholders once and remembers them only up to 50
# values, so a longer VALUES list is converted again at every execution and arrays win.
_VALUES_ROWS = 2
