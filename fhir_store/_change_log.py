"""The write side of the change log: a sequence number and a row per committed version.

`record_changes` runs in the write transaction, after the group's version rows, so a change row
commits (or rolls back) with the versions it describes; on PostgreSQL it also sends a NOTIFY,
delivered at commit to every process. `ring` wakes this process's change feeds on the same
database once a write has committed; see `fhir_store.events` for the reading
side and for why the sequence has no gaps a reader could skip.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Dialect, Table, bindparam, insert, update
from sqlalchemy.engine import URL, Connection

from fhir_store._storage import execute_on_driver
from fhir_store.models import ChangeRow, ChangeSequenceRow

if TYPE_CHECKING:
    from fhir_store._storage import Current

__all__ = ["NOTIFY_CHANNEL", "Bell", "action_of", "database_key", "record_changes", "ring"]

NOTIFY_CHANNEL = "fhir_change"  # PostgreSQL NOTIFY channel of committed changes

_CHANGE = cast(Table, ChangeRow.__table__)
_SEQUENCE = cast(Table, ChangeSequenceRow.__table__)

# Taking the next numbers locks the one sequence row until the transaction ends (see events.py).
_ADVANCE = (
    update(_SEQUENCE)
    .where(_SEQUENCE.c.id == 1)
    .values(last_seq=_SEQUENCE.c.last_seq + bindparam("b_count"))
    .returning(_SEQUENCE.c.last_seq)
)
# PostgreSQL: the sequence advanced and the rows numbered in one statement whose answer the
# write need not wait for, so that it runs pipelined with the group's other writes
# (`_storage.pipelined`). The sequence row exists from the migration that made the table.
_NUMBER_AND_INSERT = (
    f"WITH advanced AS (UPDATE {_SEQUENCE.name} SET last_seq = last_seq + %s::BIGINT"
    " WHERE id = 1 RETURNING last_seq)"
    f" INSERT INTO {_CHANGE.name} (seq, resource_type, resource_id, version_id, action)"
    " SELECT advanced.last_seq - %s::BIGINT + change.position, change.resource_type,"
    " change.resource_id, change.version_id, change.action"
    " FROM advanced, unnest(%b::TEXT[], %b::TEXT[], %b::INTEGER[], %b::TEXT[])"
    " WITH ORDINALITY AS change(resource_type, resource_id, version_id, action, position)"
)
_COLUMNS = ("seq", "resource_type", "resource_id", "version_id", "action")
# The change rows' INSERT as the driver takes it, per dialect: (SQL, positions of the columns
# in its parameter order, or None for named parameters). Through `Connection.execute` the
# rows' type processing cost more than the statement.
_INSERT_SQL: dict[tuple[type[Dialect], str], tuple[str, list[int] | None]] = {}


def action_of(method: str, version_id: int, deleted: bool) -> str:
    """The change-event action of a version: create, update or delete.

    A PUT that creates the resource (version 1) is a create; bringing a deleted resource
    back is an update, as its history goes on.
    """
    if deleted:
        return "delete"
    return "create" if method == "POST" or version_id == 1 else "update"


def record_changes(
    connection: Connection, versions: Sequence[tuple[tuple[str, str], Current, str]]
) -> None:
    """Write one change row per new version, numbered in the order they were made."""
    if not versions:
        return
    rows = [
        (
            resource_type,
            resource_id,
            state.version_id,
            action_of(method, state.version_id, state.deleted),
        )
        for (resource_type, resource_id), state, method in versions
    ]
    if connection.dialect.name == "postgresql":
        columns = [list(column) for column in zip(*rows, strict=True)]
        execute_on_driver(connection, _NUMBER_AND_INSERT, (len(rows), len(rows), *columns))
        # Delivered at commit to the feeds of every process (events.py listens).
        execute_on_driver(connection, f"NOTIFY {NOTIFY_CHANNEL}")
        return
    last = connection.execute(_ADVANCE, {"b_count": len(rows)}).scalar_one()
    numbered = [(last - len(rows) + 1 + offset, *row) for offset, row in enumerate(rows)]
    sql, order = _insert_sql(connection.dialect)
    parameters: list[tuple[Any, ...]] | list[dict[str, Any]]
    if order is None:
        parameters = [dict(zip(_COLUMNS, row, strict=True)) for row in numbered]
    else:
        parameters = [tuple(row[position] for position in order) for row in numbered]
    connection.exec_driver_sql(sql, parameters)


def _insert_sql(dialect: Dialect) -> tuple[str, list[int] | None]:
    key = (type(dialect), dialect.paramstyle)
    compiled = _INSERT_SQL.get(key)
    if compiled is None:
        statement = insert(_CHANGE).compile(dialect=dialect, column_keys=list(_COLUMNS))
        order = (
            [_COLUMNS.index(name) for name in statement.positiontup or ()]
            if dialect.positional
            else None
        )
        compiled = _INSERT_SQL[key] = (statement.string, order)
    return compiled


def database_key(url: URL) -> tuple[str, str | None, int | None, str | None]:
    """What identifies a database whatever the driver: the writer's synchronous engine and
    the readers' async engine ring the same bell."""
    return (url.get_backend_name(), url.host, url.port, url.database)


class Bell:
    """Wakes a waiting change feed of this process; safe to ring from any thread."""

    __slots__ = ("_event", "_loop")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float) -> None:
        """Until rung or `timeout_s` passed; a ring before the wait counts too."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            pass
        self._event.clear()

    def wake(self) -> None:
        """Wake the waiting feed (from any thread)."""
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._event.set)

    def register(self, url: URL) -> None:
        """Listen for commits to the database of `url`."""
        with _LOCK:
            _BELLS.setdefault(database_key(url), set()).add(self)

    def unregister(self, url: URL) -> None:
        """Stop listening."""
        with _LOCK:
            bells = _BELLS.get(database_key(url))
            if bells is not None:
                bells.discard(self)
                if not bells:
                    del _BELLS[database_key(url)]


# The bells of this process, by database: the feeds waiting for a commit to it.
_BELLS: dict[tuple[str, str | None, int | None, str | None], set[Bell]] = {}
_LOCK = threading.Lock()


def ring(url: URL) -> None:
    """A write to the database of `url` has ended (committed or not): wake its feeds."""
    with _LOCK:
        bells = list(_BELLS.get(database_key(url), ()))
    for bell in bells:
        bell.wake()
