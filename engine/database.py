"""The engine's database: declarative base, aware timestamps, the async engine and migrations.

SQLite (WAL) is the embedded default and PostgreSQL the same code with another URL; everything
dialect-specific sits here, one function per need.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Insert, LargeBinary, Table, Update, create_engine, event
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from engine.errors import ConfigError

__all__ = [
    "AwareDateTime",
    "Base",
    "create_database_engine",
    "create_sync_engine",
    "driver_cursor",
    "execute_many",
    "insert_skipping_conflicts",
    "is_sqlite",
    "require_existing_database",
    "migrate",
    "upgrade_to_head",
    "WriteThread",
]

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"
CHECKPOINT_EVERY_S = 0.05  # SQLite: the checkpoint thread's pace
CHECKPOINT_WRITER_PAGES = 4_000  # SQLite: past this many log pages the writer checkpoints too
CHECKPOINT_FAILURES_WARNED = 20  # SQLite: failed checkpoints in a row (a second) before a warning

log = logging.getLogger(__name__)
VERSION_TABLE = "engine_alembic_version"


class AwareDateTime(TypeDecorator[datetime]):
    """Stores instants in UTC (SQLite keeps no offset) and always returns aware datetimes.

    Naive values are refused: a clinical timeline never compares naive datetimes.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to an AwareDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Base of the engine's tables: datetimes are aware, bytes are large binaries."""

    type_annotation_map = {datetime: AwareDateTime(), bytes: LargeBinary()}


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_database_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Build the async engine for `url`; SQLite gets WAL, a busy timeout and foreign keys."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise ConfigError("the database URL cannot be parsed", key="database_url") from exc
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_async_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    return engine


def create_sync_engine(url: str | URL, *, writer: bool = False) -> Engine:
    """A synchronous engine on the same database, for work done in one thread hop per batch
    (the journal writer): `sqlite+aiosqlite` becomes the stdlib driver, psycopg stays.

    A `writer` engine's SQLite transactions start with BEGIN IMMEDIATE, when SQLAlchemy begins
    them: the stdlib driver would otherwise begin only at the first INSERT/UPDATE, so the reads
    before it ran outside the transaction (another process could change what they saw), and a
    SAVEPOINT before any write opened the transaction itself, its RELEASE committing it early:
    two commits instead of one.
    """
    parsed = make_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_writer_on_connect if writer else _sqlite_on_connect)
        if writer:
            event.listen(engine, "begin", _begin_immediate)
    return engine


def execute_many(
    connection: Connection, statement: Insert | Update, rows: Sequence[Mapping[str, Any]]
) -> None:
    """`connection.execute(statement, rows)` for an INSERT or UPDATE whose results are not
    read; every row has the same keys. On SQLite the rows go straight to the driver's
    executemany, their values put in its form by the columns' own bind processors: through
    `Connection.execute` SQLAlchemy's work on each row of the journal's small batches (the
    parameter dicts, type processing, the result's set-up) cost the write thread more than
    SQLite's own. PostgreSQL keeps SQLAlchemy's way (its inserts many rows to a statement)."""
    if not rows:
        return
    dialect = connection.dialect
    if dialect.name != "sqlite":
        connection.execute(statement, list(rows))
        return
    names = tuple(rows[0])
    form = _driver_form(statement, names, dialect)
    if form is None:
        connection.execute(statement, list(rows))
        return
    sql, fields = form
    parameters = [
        tuple(
            (row[name] if process is None else process(row[name])) if name is not None else constant
            for name, process, constant in fields
        )
        for row in rows
    ]
    with driver_cursor(connection) as cursor:
        cursor.executemany(sql, parameters)


@contextlib.contextmanager
def driver_cursor(connection: Connection) -> Iterator[Any]:
    """A cursor of the connection's driver connection, for statements given in the driver's
    own form; the driver's errors are wrapped as SQLAlchemy wraps them (an IntegrityError
    stays an IntegrityError for the callers that handle races)."""
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        yield cursor
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            None, None, error, dialect.loaded_dbapi.Error, dialect=dialect
        ) from error
    finally:
        cursor.close()


# A parameter: the row key and its bind processor, or (None, None, a constant)
_Field = tuple[str | None, Callable[[Any], Any] | None, Any]
_DRIVER_FORMS: dict[tuple[int, tuple[str, ...]], tuple[str, list[_Field]] | None] = {}


def _driver_form(
    statement: Insert | Update, names: tuple[str, ...], dialect: Dialect
) -> tuple[str, list[_Field]] | None:
    """The statement's SQLite text, and for each of its parameters in order: the row key and
    bind processor it takes, or the constant the statement itself holds. None when a column
    the rows leave out has a default that SQLAlchemy computes per row."""
    key = (id(statement), names)
    if key in _DRIVER_FORMS:
        return _DRIVER_FORMS[key]
    column_keys = list(names) if isinstance(statement, Insert) else None
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)
    if compiled.insert_prefetch or compiled.update_prefetch or compiled.postfetch:
        _DRIVER_FORMS[key] = None
        return None
    fields: list[_Field] = []
    for bind_name in compiled.positiontup or ():
        bind = compiled.binds[bind_name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind_name in names:
            fields.append((bind_name, process, None))
        else:  # a value written into the statement (`status = 'received'`)
            fields.append((None, None, bind.value if process is None else process(bind.value)))
    # Statements are module constants, so their ids are never reused while cached.
    _DRIVER_FORMS[key] = form = (compiled.string, fields)
    return form


def insert_skipping_conflicts(table: Table, dialect: Dialect, *unique: str) -> Insert:
    """`INSERT ... ON CONFLICT (unique...) DO NOTHING`: rows that would break that unique
    constraint are skipped (and, with RETURNING, return nothing) instead of failing the
    statement. SQLite and PostgreSQL spell it the same; SQLAlchemy has one construct for each."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table).on_conflict_do_nothing(index_elements=list(unique))
    if dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(unique))
    raise ConfigError(
        f"the {dialect.name} database is not supported; use SQLite or PostgreSQL",
        key="database_url",
    )


class WriteThread:
    """Runs write transactions one after another on a synchronous connection in one thread.

    Each `run(fn)` is a single thread hop for a whole transaction (not one per statement, as
    with the async drivers), and on SQLite, where there is one writer at a time anyway, writes
    queue here instead of sleeping in SQLite's busy handler while another transaction holds
    the lock across event-loop turns. Urgent work (journal commits that senders wait for)
    goes ahead of everything else waiting.

    On SQLite the write-ahead log is copied back into the database file (checkpointed) by a
    thread of its own with its own connection, every `CHECKPOINT_EVERY_S`, beside the writes,
    instead of inside the commit that crosses 1,000 pages: that copy was a third of a busy
    write thread's commits. The writer still checkpoints itself past `CHECKPOINT_WRITER_PAGES`,
    should the checkpoint thread fall behind, so the log cannot grow without bound.

    Only urgent commits wait for the disk: on SQLite synchronous=FULL, on PostgreSQL
    synchronous_commit on. The others (what the engine derives from the journal: statuses,
    deliveries and their attempts, FHIR resources) commit with SQLite's synchronous=NORMAL or
    PostgreSQL's synchronous_commit off: the write-ahead log is written in order, so the next
    urgent commit makes them durable too, and a power cut can only lose the last moments of
    derived work, which the journal replays (a delivery still queued is delivered again, and
    the FHIR store's writes are replays that converge).
    """

    def __init__(self, url: str | URL, *, threads: int = 1) -> None:
        self._engine = create_sync_engine(url, writer=True)
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._threads = [
            threading.Thread(target=self._serve, name=f"db-writer-{n}", daemon=True)
            for n in range(threads)
        ]
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._stopping = threading.Event()
        if self._sqlite:
            self._threads.append(
                threading.Thread(target=self._checkpoint, name="db-checkpoint", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    async def run(self, work: Callable[[Connection], T], *, urgent: bool = False) -> T:
        """Run `work(connection)` inside one transaction, committed when it returns."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(work, future, loop, urgent)
        self._queue.put((0 if urgent else 1, next(self._order), job))
        # Shielded: a transaction that has started runs to its end even when the awaiting task
        # is cancelled, so nobody is left guessing whether it committed.
        return await asyncio.shield(future)

    def _serve(self) -> None:
        # Each thread keeps its connection: checking one out of the pool per transaction cost
        # as much as a small transaction itself. A broken one is replaced at the next job.
        connection: Connection | None = None
        try:
            while True:
                _, _, job = self._queue.get()
                if job is None:
                    return
                try:
                    if connection is None or connection.invalidated or connection.closed:
                        connection = self._engine.connect()
                    if connection.in_transaction():  # left open by a failure: start clean
                        connection.rollback()
                    if self._sqlite:
                        self._set_synchronous(connection, "FULL" if job.urgent else "NORMAL")
                    with connection.begin():
                        if not self._sqlite:
                            self._set_synchronous_commit(connection, "on" if job.urgent else "off")
                        result = job.work(connection)
                except BaseException as exc:  # handed to the awaiting task, which decides
                    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                        connection = None
                    elif connection is not None and not self._sqlite:
                        with contextlib.suppress(Exception):  # the rollback undid any SET
                            connection.info.pop("synchronous_commit", None)
                    job.settle(None, exc)
                else:
                    job.settle(result, None)
        finally:
            if connection is not None:
                connection.close()

    def _checkpoint(self) -> None:
        connection = self._engine.raw_connection()
        failures = 0
        try:
            while not self._stopping.wait(CHECKPOINT_EVERY_S):
                try:
                    self._copy_log(connection.driver_connection)
                except Exception as error:  # locked or busy now: next time
                    failures += 1
                    if failures == CHECKPOINT_FAILURES_WARNED:  # once per run of failures
                        log.warning(
                            "SQLite checkpoints of %s keep failing (%s); the write-ahead log is "
                            "copied back only by the writer's commits, past %d pages, which "
                            "slows them. Check the disk and the file's permissions.",
                            self._engine.url.database,
                            error,
                            CHECKPOINT_WRITER_PAGES,
                        )
                else:
                    if failures >= CHECKPOINT_FAILURES_WARNED:
                        log.info("SQLite checkpoints of %s work again", self._engine.url.database)
                    failures = 0
        finally:
            connection.close()

    @staticmethod
    def _copy_log(driver_connection: Any) -> None:
        # PASSIVE never waits for the writer or the readers: it copies what no reader still
        # needs, and the writer starts the log afresh once all of it is copied.
        driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")

    @staticmethod
    def _set_synchronous(connection: Connection, level: str) -> None:
        # `info` belongs to the pooled DBAPI connection, which keeps the pragma. It runs before
        # BEGIN (SQLite refuses it in a transaction), straight to the driver: it alternates
        # with nearly every journal commit, and going through SQLAlchemy's execution context
        # cost ten times the pragma itself.
        info = connection.info
        if info.get("synchronous") != level:
            driver = connection.connection.driver_connection
            driver.execute(f"PRAGMA synchronous={level}")  # type: ignore[union-attr]
            info["synchronous"] = level

    @staticmethod
    def _set_synchronous_commit(connection: Connection, level: str) -> None:
        # A session setting, sent only when it changes: the PostgreSQL journal's thread and the
        # derived work's thread each keep theirs, so it costs no statement at steady state.
        info = connection.info
        if info.get("synchronous_commit") != level:
            connection.exec_driver_sql(f"SET synchronous_commit TO {level}")
            info["synchronous_commit"] = level

    def close(self) -> None:
        self._stopping.set()
        for _ in self._threads:
            self._queue.put((2, next(self._order), None))
        for thread in self._threads:
            thread.join()
        self._engine.dispose()


class _Job:
    """One transaction waiting for the write thread, and the future that awaits it."""

    def __init__(
        self,
        work: Callable[[Connection], Any],
        future: asyncio.Future[Any],
        loop: Any,
        urgent: bool,
    ) -> None:
        self.work = work
        self.future = future
        self.loop = loop
        self.urgent = urgent

    def settle(self, result: Any, error: BaseException | None) -> None:
        def deliver() -> None:
            if self.future.done():
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(result)

        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
            self.loop.call_soon_threadsafe(deliver)


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the HTTP API) run while the journal writer commits. synchronous=FULL
    # makes every commit survive power loss, not only a process crash; the journal's group
    # commit keeps that to one fsync per batch of messages.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_writer_on_connect(dbapi_connection: Any, record: Any) -> None:
    # The driver's own BEGIN is off (isolation_level None): `_begin_immediate` begins instead.
    dbapi_connection.isolation_level = None
    _sqlite_on_connect(dbapi_connection, record)
    # Writer engines are WriteThread's, whose checkpoint thread copies the log back; the
    # writer's own commits do it only when that thread falls behind.
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_WRITER_PAGES}")


def _begin_immediate(connection: Connection) -> None:
    # Straight to the driver, as the synchronous pragma: once per transaction.
    connection.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]


async def migrate(engine: AsyncEngine) -> None:
    """Bring the engine's tables to the newest Alembic revision."""
    await upgrade_to_head(engine, MIGRATIONS)


async def upgrade_to_head(engine: AsyncEngine, script_location: Path) -> None:
    """Run the Alembic history in `script_location` up to its head on `engine`, in one
    transaction; its env.py finds the connection in `config.attributes["connection"]`. Plugins
    with their own tables (a `greenchannel.migrations` entry point) use it too."""
    from alembic import command
    from alembic.config import Config

    def upgrade(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(script_location))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        await connection.run_sync(upgrade)


def require_existing_database(url: str, *, hint: str) -> None:
    """Refuse a SQLite file that does not exist (SQLite would create it empty), for commands
    that read an engine's database; `hint` says where the right one is."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        if not Path(parsed.database).is_file():
            raise ConfigError(f"no database at {parsed.database}", key="database_url", hint=hint)
