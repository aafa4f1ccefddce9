"""The store's write and read engines: synchronous engines on the async engine's database, for
threads.

Through aiosqlite every SQL statement is a hop to its thread and back (0.2-0.3 ms, far more
than SQLite's own work), so the store runs each unit of write work, all its statements included,
in one worker thread on a synchronous engine instead: one hop per group of Bundles. Reads do the
same on an engine of their own (a search is three to five statements: one hop instead).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "can_mirror",
    "create_read_engine",
    "create_write_engine",
    "ping_after_idle",
    "read_engine_at",
]

_READERS = 4  # SQLite read connections: the worker threads of asyncio's default executor
# A PostgreSQL connection idle longer than this is pinged before use (see `ping_after_idle`).
PING_AFTER_IDLE_S = 1.0

# The synchronous driver of each async driver the store can mirror.
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite+pysqlite",
    "postgresql+psycopg": "postgresql+psycopg",
}


def can_mirror(url: URL) -> bool:
    """Whether a synchronous engine, in this process or another, reaches the database of an
    async engine with this URL: a known driver, and not an in-memory SQLite database."""
    return url.drivername in _SYNC_DRIVERS and not _in_memory(url)


def create_write_engine(database: AsyncEngine) -> Engine | None:
    """A synchronous engine on `database`'s URL, or None if it has no synchronous twin
    (another driver, or an in-memory SQLite database that a second engine would not see).

    SQLite gets one connection, with WAL, synchronous=FULL, a 30 s busy timeout and foreign
    keys, and every transaction starts with BEGIN IMMEDIATE: the write lock is taken up front,
    so the reads of a write see the rows it then changes; the store's writers queue for the
    connection, other processes' on the busy timeout.
    """
    url = database.url
    if not can_mirror(url):
        return None
    driver = _SYNC_DRIVERS[url.drivername]
    if url.get_backend_name() != "sqlite":
        return _server_engine(url.set(drivername=driver))
    # One connection: SQLite has one writer at a time anyway, and a thread waiting for the pool
    # is handed the connection the moment it is free, where one waiting on the busy timeout
    # polls with sleeps of up to 100 ms (8 concurrent writers: p99 over a second).
    engine = create_engine(url.set(drivername=driver), pool_size=1, max_overflow=0, pool_timeout=60)
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _begin_immediate)
    return engine


def create_read_engine(database: AsyncEngine) -> Engine | None:
    """A synchronous engine for reads on `database`'s URL, or None without a synchronous twin.

    SQLite readers do not wait for the writer (WAL) and see what it committed; they begin no
    transaction of their own (the driver's default, as through aiosqlite), so every statement
    reads the latest commit, as the async engine's connections do.
    """
    return read_engine_at(database.url)


def read_engine_at(url: URL) -> Engine | None:
    """`create_read_engine` for an async engine's URL, in a process that has no such engine
    (the store's background process)."""
    if not can_mirror(url):
        return None
    driver = _SYNC_DRIVERS[url.drivername]
    if url.get_backend_name() != "sqlite":
        return _server_engine(url.set(drivername=driver))
    engine = create_engine(url.set(drivername=driver), pool_size=_READERS, max_overflow=0)
    event.listen(engine, "connect", sqlite_pragmas)
    return engine


def _server_engine(url: URL) -> Engine:
    """An engine on a database server whose pooled connections are checked before use only
    when they sat idle (`ping_after_idle`)."""
    engine = create_engine(url)
    ping_after_idle(engine)
    return engine


def ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection at checkout only if it was idle over PING_AFTER_IDLE_S.

    SQLAlchemy's `pool_pre_ping` pings at every checkout: one of a small transaction's few
    round trips, for a connection used a few milliseconds before. A connection that sat idle
    is where a server restart or a dropped link shows; one that fails its ping is replaced
    (DisconnectionError makes the pool open a new one). A connection lost since its last use
    less than a second ago fails its statement instead, as one lost after a ping does: the
    store reports it (StoreUnavailable, retry later).
    """

    def checked_in(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["checked_in"] = time.monotonic()

    def checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        last = record.info.get("checked_in")
        if last is not None and time.monotonic() - last < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError(f"the pooled connection is gone: {error}") from error

    event.listen(engine, "checkin", checked_in)
    event.listen(engine, "checkout", checkout)


def _in_memory(url: URL) -> bool:
    if url.get_backend_name() != "sqlite":
        return False
    return url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # The sqlite3 driver's own BEGIN is turned off (isolation_level None) so that the "begin"
    # event below decides how transactions start; SQLAlchemy still commits and rolls back.
    dbapi_connection.isolation_level = None
    sqlite_pragmas(dbapi_connection, _record)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The store's SQLite settings, for every connection it opens (a `connect` listener)."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _begin_immediate(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")
