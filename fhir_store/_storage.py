"""SQL over the store's tables: lookups, searches and the bulk write of a group's changes.

The functions take a synchronous `Connection`: writes run them in a worker thread on the
store's write engine, reads through `AsyncConnection.run_sync`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Delete,
    Dialect,
    Insert,
    Integer,
    Select,
    String,
    Table,
    TypeDecorator,
    Update,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from fhir_store._indexing import ResourceIndex, extract_index
from fhir_store._json import dumps, loads
from fhir_store._requests import IdentifierToken
from fhir_store._resources import identifier_tokens
from fhir_store.models import (
    DateIndexRow,
    NumberIndexRow,
    QuantityIndexRow,
    ReferenceIndexRow,
    ResourceRow,
    ResourceVersionRow,
    StringIndexRow,
    TokenIndexRow,
    UriIndexRow,
)

__all__ = [
    "Current",
    "allocate_keys",
    "RowWrites",
    "execute_on_driver",
    "fetch_current",
    "fetch_identifiers",
    "fetch_versions",
    "find_ids",
    "numbered",
    "pipelined",
    "search_rows",
    "write_rows",
]

_RESOURCE = cast(Table, ResourceRow.__table__)
_VERSION = cast(Table, ResourceVersionRow.__table__)
_TOKEN = cast(Table, TokenIndexRow.__table__)
_STRING = cast(Table, StringIndexRow.__table__)
_REFERENCE = cast(Table, ReferenceIndexRow.__table__)
_DATE = cast(Table, DateIndexRow.__table__)
_NUMBER = cast(Table, NumberIndexRow.__table__)
_QUANTITY = cast(Table, QuantityIndexRow.__table__)
_URI = cast(Table, UriIndexRow.__table__)
_CHUNK = 400  # keys per IN (...) list: under SQLite's and psycopg's parameter limits


@dataclass(slots=True)
class Current:
    """The current state of a resource: as read from the database, or as a group wrote it."""

    version_id: int
    deleted: bool
    content: str | None
    _parsed: dict[str, Any] | None = None
    _tokens: list[tuple[str | None, str]] | None = None
    last_updated: datetime | None = None
    _index: ResourceIndex | None = None
    key: int | None = None  # fhir_resource.key: None until a new resource's is allocated

    def resource(self) -> dict[str, Any]:
        """The current content, parsed once."""
        if self._parsed is None:
            self._parsed = loads(self.content or "{}")
        return self._parsed

    def tokens(self) -> list[tuple[str | None, str]]:
        """The identifier tokens the search index holds for this state (none if deleted)."""
        if self._tokens is None:
            self._tokens = [] if self.deleted else identifier_tokens(self.resource())
        return self._tokens

    def index(self) -> ResourceIndex:
        """The search index rows of this state, every parameter type (none if deleted)."""
        if self._index is None:
            self._index = ResourceIndex() if self.deleted else extract_index(self.resource())
        return self._index

    def forget_parsed(self) -> None:
        """Drop the parsed content (the JSON text stays): before pickling, as `resource()`
        parses it again if asked."""
        self._parsed = None

    def same_content(self, other: Current) -> bool:
        """Whether both states hold the same resource, apart from meta.versionId and
        meta.lastUpdated: then the search index rows need no rebuilding."""
        if self.deleted or other.deleted:
            return self.deleted and other.deleted
        mine, theirs = self.resource(), other.resource()
        if len(mine) != len(theirs):
            return False
        for key, value in mine.items():
            if key == "meta" and isinstance(value, dict):
                if _bare_meta(value) != _bare_meta(theirs.get("meta")):
                    return False
            elif theirs.get(key, _ABSENT) != value:
                return False
        return True


_ABSENT = object()


def _bare_meta(meta: Any) -> Any:
    if not isinstance(meta, dict):
        return meta
    return {key: value for key, value in meta.items() if key not in ("versionId", "lastUpdated")}


class RowWrites:
    """The row changes of a group, written with one executemany per kind of change.

    Rows are kept as tuples with their values already in the driver's form (`_BulkWrite`);
    a group's timestamps are all the same, so each distinct one is converted once.
    """

    __slots__ = (
        "_bind_date",
        "_bound_dates",
        "_bind_time",
        "_last_time",
        "_last_bound",
        "resource_inserts",
        "resource_updates",
        "version_inserts",
        "version_contents",
        "index_deletes",
        "token_inserts",
        "string_inserts",
        "reference_inserts",
        "date_inserts",
        "number_inserts",
        "quantity_inserts",
        "uri_inserts",
    )

    def __init__(self, dialect: Dialect) -> None:
        # the dialect's own processor, as for dates: SQLite then holds the text a bound query value
        # has ('... 20:16:18.000000'), so eq/ge on an exact lastUpdated find it
        self._bind_time = _RESOURCE.c.last_updated.type.dialect_impl(dialect).bind_processor(
            dialect
        )
        self._last_time: datetime | None = None
        self._last_bound: Any = None
        self.resource_inserts: list[tuple[Any, ...]] = []
        self.resource_updates: list[tuple[Any, ...]] = []
        self.version_inserts: list[tuple[Any, ...]] = []
        self.version_contents: list[tuple[Any, ...]] = []
        self._bind_date = _DATE.c.low.type.dialect_impl(dialect).bind_processor(dialect)
        self._bound_dates: dict[datetime, Any] = {}  # many resources share dates (and DATE_MAX)
        self.index_deletes: list[tuple[Any, ...]] = []
        self.token_inserts: list[tuple[Any, ...]] = []
        self.string_inserts: list[tuple[Any, ...]] = []
        self.reference_inserts: list[tuple[Any, ...]] = []
        self.date_inserts: list[tuple[Any, ...]] = []
        self.number_inserts: list[tuple[Any, ...]] = []
        self.quantity_inserts: list[tuple[Any, ...]] = []
        self.uri_inserts: list[tuple[Any, ...]] = []

    def resource(
        self, resource_type: str, resource_id: str, state: Current, *, exists: bool
    ) -> None:
        """Set the resource row of `resource_type/resource_id` to `state` (a new one's with
        its `key`)."""
        row = (
            resource_type,
            resource_id,
            state.version_id,
            self._time(state.last_updated),
            state.deleted,
            state.content,
        )
        if exists:
            self.resource_updates.append(row)
        else:
            self.resource_inserts.append((*row, state.key))

    def version(
        self, resource_type: str, resource_id: str, state: Current, method: str, *, current: bool
    ) -> None:
        """Keep `state` as a version of `resource_type/resource_id`, made by `method`; the
        `current` one without its content, which the resource row holds."""
        self.version_inserts.append(
            (
                resource_type,
                resource_id,
                state.version_id,
                self._time(state.last_updated),
                state.deleted,
                method,
                None if current else state.content,
            )
        )

    def superseded(self, resource_type: str, resource_id: str, state: Current) -> None:
        """The version `state` was current and no longer is: its row gets its content."""
        if state.content is not None:
            self.version_contents.append(
                (resource_type, resource_id, state.version_id, state.content)
            )

    def index(
        self,
        resource_type: str,
        resource_id: str,
        resource_key: int,
        index: ResourceIndex,
        *,
        replace: bool,
    ) -> None:
        """Write the search index rows of the resource numbered `resource_key`, first dropping
        its old ones if `replace`."""
        if replace:
            self.index_deletes.append((resource_key,))
        key = (resource_type, resource_id, resource_key)
        self.token_inserts.extend(key + row for row in index.tokens)
        self.string_inserts.extend(key + row for row in index.strings)
        self.reference_inserts.extend(key + row for row in index.references)
        bind = self._bind_date
        if bind is None:
            self.date_inserts.extend(key + row for row in index.dates)
        else:
            bound = self._bound_dates
            for param, low, high in index.dates:
                low_bound = bound.get(low)
                if low_bound is None:
                    low_bound = bound[low] = bind(low)
                high_bound = bound.get(high)
                if high_bound is None:
                    high_bound = bound[high] = bind(high)
                self.date_inserts.append((*key, param, low_bound, high_bound))
        self.number_inserts.extend(key + row for row in index.numbers)
        self.quantity_inserts.extend(key + row for row in index.quantities)
        self.uri_inserts.extend(key + row for row in index.uris)

    def _time(self, value: datetime | None) -> Any:
        if value is not self._last_time:
            self._last_time = value
            self._last_bound = self._bind_time(value) if self._bind_time is not None else value
        return self._last_bound


def write_rows(connection: Connection, writes: RowWrites) -> None:
    """Write a group's row changes: resources first (the other tables refer to them).

    Resource and version rows go in key order: two writers that create or change some of the
    same resources (two lanes, the same Practitioner) then lock them in the same order, and
    the second waits for the first and finds its rows, instead of each waiting for the other
    until PostgreSQL's deadlock detector aborts one a second later.
    """
    _INSERT_RESOURCES.execute(connection, sorted(writes.resource_inserts, key=_resource_key))
    _UPDATE_RESOURCES.execute(connection, sorted(writes.resource_updates, key=_resource_key))
    _INSERT_VERSIONS.execute(connection, sorted(writes.version_inserts, key=_version_key))
    _FILL_VERSIONS.execute(connection, sorted(writes.version_contents, key=_version_key))
    for delete_index in _DELETE_INDEX:
        delete_index.execute(connection, writes.index_deletes)
    _INSERT_TOKENS.execute(connection, writes.token_inserts)
    _INSERT_STRINGS.execute(connection, writes.string_inserts)
    _INSERT_REFERENCES.execute(connection, writes.reference_inserts)
    _INSERT_DATES.execute(connection, writes.date_inserts)
    _INSERT_NUMBERS.execute(connection, writes.number_inserts)
    _INSERT_QUANTITIES.execute(connection, writes.quantity_inserts)
    _INSERT_URIS.execute(connection, writes.uri_inserts)


def _resource_key(row: tuple[Any, ...]) -> tuple[str, str]:
    return row[0], row[1]


def _version_key(row: tuple[Any, ...]) -> tuple[str, str, int]:
    return row[0], row[1], row[2]


def fetch_current(
    connection: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Current]:
    """The current rows of the given (type, id) keys that exist, deleted ones included, with
    their resource's number."""
    return {
        (resource_type, resource_id): Current(version_id, deleted, content, key=key)
        for resource_type, (resource_id, version_id, deleted, content, key) in _rows_by_key(
            connection, _SELECT_CURRENT, keys
        )
    }


def fetch_versions(
    connection: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[int, bool, int | None]]:
    """(version, deleted, number) of the given (type, id) keys that exist: `fetch_current`
    without the content, to check that what was read is still current."""
    return {
        (resource_type, resource_id): (version_id, deleted, key)
        for resource_type, (resource_id, version_id, deleted, key) in _rows_by_key(
            connection, _SELECT_VERSIONS, keys
        )
    }


def _rows_by_key(
    connection: Connection,
    statements: dict[str, Select[Any]],
    keys: Iterable[tuple[str, str]],
) -> Iterator[tuple[str, Any]]:
    """(type, row) of the resource rows of `keys` that exist, read a type at a time."""
    statement = statements[_in_list_kind(connection)]
    for resource_type, ids in _by_type(keys).items():
        for start in range(0, len(ids), _CHUNK):
            result = connection.execute(
                statement, {"b_type": resource_type, "b_ids": ids[start : start + _CHUNK]}
            )
            for row in result:
                yield resource_type, row


def numbered(key: int | None) -> int:
    """A stored resource's number (`fhir_resource.key`), which every row has since f0006."""
    if key is None:
        raise RuntimeError("a stored resource has no key: run the FHIR store's migrations")
    return key


def allocate_keys(connection: Connection, count: int) -> list[int]:
    """Numbers (`fhir_resource.key`) for `count` new resources, larger than any given before:
    from PostgreSQL's sequence, as its writers run side by side; on SQLite one more than the
    largest stored, as its one writer holds the database from the first read to the commit."""
    if count == 0:
        return []
    if connection.dialect.name == "postgresql":
        return list(connection.execute(_NEXT_KEYS, {"b_count": count}).scalars())
    largest = connection.execute(_LARGEST_KEY).scalar()
    first = (largest or 0) + 1
    return list(range(first, first + count))


def fetch_identifiers(
    connection: Connection, values: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
    """For (type, identifier value) pairs: the (id, system) of each current resource of the
    type with an identifier of that value, whatever its system."""
    found: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for resource_type, wanted in _by_type(values).items():
        for start in range(0, len(wanted), _CHUNK):
            result = connection.execute(
                _SELECT_IDENTIFIERS[_in_list_kind(connection)],
                {"b_type": resource_type, "b_values": wanted[start : start + _CHUNK]},
            )
            for value, resource_id, system in result:
                found.setdefault((resource_type, value), []).append((resource_id, system))
    return found


def find_ids(
    connection: Connection,
    resource_type: str,
    token: IdentifierToken,
    *,
    limit: int | None = None,
) -> list[str]:
    """Ids of current resources of `resource_type` with a matching identifier."""
    statement = _FIND_IDS[_system_kind(token), limit is not None]
    result = connection.execute(statement, _token_parameters(resource_type, token, limit))
    return list(result.scalars())


def search_rows(
    connection: Connection, resource_type: str, token: IdentifierToken
) -> list[tuple[str, str]]:
    """(id, JSON content) of the current resources of `resource_type` with a matching
    identifier, by id."""
    result = connection.execute(
        _SEARCH[_system_kind(token)], _token_parameters(resource_type, token, None)
    )
    return [(resource_id, content) for resource_id, content in result if content is not None]


def _by_type(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Keys grouped by their type, each once: `type = ? AND id IN (...)` reads the primary key
    (or the token index); a row-value IN over both columns is a table scan on SQLite."""
    grouped: dict[str, dict[str, None]] = {}
    for resource_type, key in keys:
        grouped.setdefault(resource_type, {})[key] = None
    return {resource_type: list(ids) for resource_type, ids in grouped.items()}


def _in_list_kind(connection: Connection) -> str:
    """How a statement takes a list of keys on this database, as one parameter, so that the
    SQL text is the same whatever the length and is prepared once: PostgreSQL gets an array
    (`= ANY(...)`), SQLite a JSON array (`IN (SELECT value FROM json_each(...))`). An
    expanding `IN (...)`, a parameter per key, made SQLAlchemy write the SQL again at every
    execution and SQLite prepare a statement for every length met."""
    return "array" if connection.dialect.name == "postgresql" else "json"


class _JsonList(TypeDecorator[list[str]]):
    """A list of strings bound as one JSON array text."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> str | None:
        return None if value is None else dumps(value)


def _in_list(column: ColumnElement[str], name: str, kind: str) -> ColumnElement[bool]:
    if kind == "array":
        return column == any_(bindparam(name, type_=ARRAY(String)))
    listed = func.json_each(bindparam(name, type_=_JsonList())).table_valued("value")
    return column.in_(select(listed.c.value))


def _system_kind(token: IdentifierToken) -> str:
    if token.any_system:
        return "any"
    return "none" if token.system is None else "equal"


def _token_parameters(
    resource_type: str, token: IdentifierToken, limit: int | None
) -> dict[str, Any]:
    parameters: dict[str, Any] = {"b_type": resource_type, "b_value": token.value}
    if token.system is not None and not token.any_system:
        parameters["b_system"] = token.system
    if limit is not None:
        parameters["b_limit"] = limit
    return parameters


def _token_match(system_kind: str) -> list[ColumnElement[bool]]:
    conditions = [
        _TOKEN.c.resource_type == bindparam("b_type"),
        _TOKEN.c.param == "identifier",
        _TOKEN.c.value == bindparam("b_value"),
    ]
    if system_kind == "none":
        conditions.append(_TOKEN.c.system.is_(None))
    elif system_kind == "equal":
        conditions.append(_TOKEN.c.system == bindparam("b_system"))
    return conditions


def _find_ids(system_kind: str, limited: bool) -> Select[str]:
    query = select(_TOKEN.c.resource_id).distinct().where(*_token_match(system_kind))
    if limited:
        query = query.limit(bindparam("b_limit", type_=Integer))
    return query.order_by(_TOKEN.c.resource_id)


def _by_id(kind: str, *columns: ColumnElement[Any]) -> Select[Any]:
    """`columns` of the resource rows of one type and a list of ids."""
    return select(*columns).where(
        _RESOURCE.c.resource_type == bindparam("b_type"), _in_list(_RESOURCE.c.id, "b_ids", kind)
    )


def _search(system_kind: str) -> Select[str, str | None]:
    matching = select(_TOKEN.c.resource_id).where(*_token_match(system_kind))
    return (
        select(_RESOURCE.c.id, _RESOURCE.c.content)
        .where(
            _RESOURCE.c.resource_type == bindparam("b_type"),
            _RESOURCE.c.id.in_(matching),
            _RESOURCE.c.deleted.is_(False),
        )
        .order_by(_RESOURCE.c.id)
    )


# Statements built once: building them per call cost more than running them.
_IN_LIST_KINDS = ("array", "json")
_SELECT_CURRENT = {
    kind: _by_id(
        kind,
        _RESOURCE.c.id,
        _RESOURCE.c.version_id,
        _RESOURCE.c.deleted,
        _RESOURCE.c.content,
        _RESOURCE.c.key,
    )
    for kind in _IN_LIST_KINDS
}
_SELECT_VERSIONS = {
    kind: _by_id(kind, _RESOURCE.c.id, _RESOURCE.c.version_id, _RESOURCE.c.deleted, _RESOURCE.c.key)
    for kind in _IN_LIST_KINDS
}
_NEXT_KEYS = text("SELECT nextval('fhir_resource_key_seq') FROM generate_series(1, :b_count)")
_LARGEST_KEY = select(func.max(_RESOURCE.c.key))
_SELECT_IDENTIFIERS = {
    kind: select(_TOKEN.c.value, _TOKEN.c.resource_id, _TOKEN.c.system).where(
        _TOKEN.c.resource_type == bindparam("b_type"),
        _TOKEN.c.param == "identifier",
        _in_list(_TOKEN.c.value, "b_values", kind),
    )
    for kind in _IN_LIST_KINDS
}
_SYSTEM_KINDS = ("any", "none", "equal")
_FIND_IDS = {
    (kind, limited): _find_ids(kind, limited) for kind in _SYSTEM_KINDS for limited in (False, True)
}
_SEARCH = {kind: _search(kind) for kind in _SYSTEM_KINDS}


class _BulkWrite:
    """A statement run with executemany straight on the driver, for a group's many rows.

    Through `Connection.execute` SQLAlchemy works on every row of an executemany (parameter
    dicts, type processing: about 4 µs a row, more than SQLite's own work), so the statement
    is compiled once per dialect and its rows, tuples in `names` order with values already in
    the driver's form, go to the driver as they are, on a cursor of the connection's own (even
    `exec_driver_sql` costs ~25 µs a statement, and a small transaction runs seven). The
    driver's errors are wrapped as SQLAlchemy wraps them (IntegrityError: a lost race).

    On PostgreSQL an INSERT takes all its rows in one statement instead, one array parameter
    per column (`INSERT ... SELECT * FROM unnest(%b::type[], ...)`): psycopg's executemany
    sends a statement per row, each parsed, bound and executed by the server, and a group of
    ADT messages has ~40 index rows a message. One SQL text whatever the number of rows, so
    psycopg prepares it once. Measured on 40-row inserts: about half the client CPU and three
    quarters of the server's.
    """

    def __init__(self, statement: Insert | Update | Delete, names: tuple[str, ...]) -> None:
        self._statement = statement
        self._names = names
        # per dialect class and paramstyle: the SQL, and the row positions in its order (None:
        # as they are; "columns": one array per column, PostgreSQL's unnest)
        self._compiled: dict[tuple[type[Dialect], str], tuple[str, list[int] | str | None]] = {}

    def execute(self, connection: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Write the rows (the statement once per row, or once with arrays); nothing if none."""
        if not rows:
            return
        dialect = connection.dialect
        key = (type(dialect), dialect.paramstyle)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(dialect)
        sql, order = compiled
        parameters: list[tuple[Any, ...]] | list[dict[str, Any]] | list[list[Any]]
        arrays = isinstance(order, str)  # "columns": one array parameter per column
        if arrays:
            parameters = [list(column) for column in zip(*rows, strict=True)]
        elif not dialect.positional:
            parameters = [dict(zip(self._names, row, strict=True)) for row in rows]
        elif order is None:
            parameters = rows
        else:
            assert isinstance(order, list)
            parameters = [tuple(row[position] for position in order) for row in rows]
        execute_on_driver(connection, sql, parameters, many=not arrays)

    def _compile(self, dialect: Dialect) -> tuple[str, list[int] | str | None]:
        if dialect.name == "postgresql" and isinstance(self._statement, Insert):
            return self._unnest(dialect), "columns"
        column_keys = list(self._names) if isinstance(self._statement, Insert) else None
        compiled = self._statement.compile(dialect=dialect, column_keys=column_keys)
        if not dialect.positional:
            return compiled.string, None
        order = [self._names.index(name) for name in compiled.positiontup or ()]
        return compiled.string, None if order == list(range(len(self._names))) else order

    def _unnest(self, dialect: Dialect) -> str:
        table = self._statement.table
        preparer = dialect.identifier_preparer
        # Strings as TEXT, not VARCHAR(n): a cast to VARCHAR(n) would cut a longer value where
        # the insert refuses it. Binary parameters (%b): psycopg quotes and escapes every
        # element of a text-format array with regular expressions, ten times the cost for
        # the resources' JSON.
        arrays = ", ".join(
            f"%b::{_array_type(table.c[name].type, dialect)}[]" for name in self._names
        )
        columns = ", ".join(preparer.quote(name) for name in self._names)
        return (
            f"INSERT INTO {preparer.format_table(table)} ({columns}) SELECT * FROM unnest({arrays})"
        )


def execute_on_driver(
    connection: Connection, sql: str, parameters: Any = None, *, many: bool = False
) -> None:
    """Run SQL in the driver's own form on a cursor of the connection's driver connection,
    whose results are not read; the driver's errors wrapped as SQLAlchemy wraps them."""
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
    except dialect.loaded_dbapi.Error as error:
        raise DBAPIError.instance(
            sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect, ismulti=many
        ) from error
    finally:
        cursor.close()


@contextmanager
def pipelined(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, the block's statements go to the server without waiting for each answer
    (psycopg's pipeline mode), and the answers come back together at its end: one round trip
    for a group's writes instead of one per statement (a small transaction wrote ten, each
    0.1-0.3 ms of waiting on a local server, more across a network). Elsewhere (SQLite, an
    async connection) it does nothing.

    Only statements whose results are not read may run in the block: `_BulkWrite`'s and the
    change log's. Through `Connection.execute` SQLAlchemy would find no result rows yet. A
    statement's error surfaces at a later statement of the block or at its end, as the driver
    error it is, wrapped as `_BulkWrite` wraps it (an IntegrityError is a lost race to the
    callers). The pipeline is closed before that error goes on: closed by the error, it would
    log a warning of its own ("pipeline aborted") for a race that is handled.
    """
    pipeline = getattr(connection.connection.driver_connection, "pipeline", None)
    # An async driver's pipeline is an async context: the store's work runs synchronously
    # (`run_sync`) where it has no synchronous engine of its own, and goes without it there.
    if connection.dialect.name != "postgresql" or connection.dialect.is_async or pipeline is None:
        yield
        return
    dbapi_error = connection.dialect.loaded_dbapi.Error
    failed: DBAPIError | None = None
    try:
        with pipeline():
            try:
                yield
            except DBAPIError as error:  # a statement's error, met at a later one
                failed = error
    except dbapi_error as error:
        if failed is None:  # met at the end of the block
            raise DBAPIError.instance(
                None, None, error, dbapi_error, dialect=connection.dialect
            ) from error
    if failed is not None:
        raise failed


def _array_type(column_type: TypeEngine[Any], dialect: Dialect) -> str:
    return "TEXT" if isinstance(column_type, String) else column_type.compile(dialect=dialect)


_INSERT_RESOURCES = _BulkWrite(
    insert(_RESOURCE),
    ("resource_type", "id", "version_id", "last_updated", "deleted", "content", "key"),
)
_UPDATE_RESOURCES = _BulkWrite(
    update(_RESOURCE)
    .where(_RESOURCE.c.resource_type == bindparam("b_type"), _RESOURCE.c.id == bindparam("b_id"))
    .values(
        version_id=bindparam("b_version"),
        last_updated=bindparam("b_updated"),
        deleted=bindparam("b_deleted"),
        content=bindparam("b_content"),
    ),
    ("b_type", "b_id", "b_version", "b_updated", "b_deleted", "b_content"),
)
_INSERT_VERSIONS = _BulkWrite(
    insert(_VERSION),
    (
        "resource_type",
        "resource_id",
        "version_id",
        "last_updated",
        "deleted",
        "method",
        "content",
    ),
)
_FILL_VERSIONS = _BulkWrite(
    update(_VERSION)
    .where(
        _VERSION.c.resource_type == bindparam("b_type"),
        _VERSION.c.resource_id == bindparam("b_id"),
        _VERSION.c.version_id == bindparam("b_version"),
    )
    .values(content=bindparam("b_content")),
    ("b_type", "b_id", "b_version", "b_content"),
)
_INDEX_TABLES = (_TOKEN, _STRING, _REFERENCE, _DATE, _NUMBER, _QUANTITY, _URI)
_DELETE_INDEX = [
    _BulkWrite(
        delete(table).where(table.c.resource_key == bindparam("b_key")),
        ("b_key",),
    )
    for table in _INDEX_TABLES
]
_KEY = ("resource_type", "resource_id", "resource_key", "param")
_INSERT_TOKENS = _BulkWrite(insert(_TOKEN), (*_KEY, "system", "value"))
_INSERT_STRINGS = _BulkWrite(insert(_STRING), (*_KEY, "normal", "exact"))
_INSERT_REFERENCES = _BulkWrite(insert(_REFERENCE), (*_KEY, "target_type", "target_id"))
_INSERT_DATES = _BulkWrite(insert(_DATE), (*_KEY, "low", "high"))
_INSERT_NUMBERS = _BulkWrite(insert(_NUMBER), (*_KEY, "value"))
_INSERT_QUANTITIES = _BulkWrite(insert(_QUANTITY), (*_KEY, "value", "system", "code"))
_INSERT_URIS = _BulkWrite(insert(_URI), (*_KEY, "value"))
