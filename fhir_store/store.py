"""The FHIR store: versioned CRUD, identifier search and transaction/batch Bundles on SQLAlchemy.

Every public method is one unit of work in its own database transaction. Reads run on the
caller's `AsyncEngine`; writes are resolved in memory and written in bulk, in one worker thread
on a synchronous engine the store builds on the same database (`_writer.py`).
`transaction_many` applies many Bundles that way, each atomic on its own, which is how the FHIR
destination gets its throughput.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fhir_store._change_log import ring
from fhir_store._compartment import in_compartment
from fhir_store._custom_params import load_custom_parameters, touches_search_parameters
from fhir_store._everything import EverythingQuery, run_everything
from fhir_store._fhirpath_patch import apply_fhirpath_patch
from fhir_store._group import LostRace, apply_bundles, apply_entries, concurrent_write, write_plan
from fhir_store._group import _error_entry as error_entry
from fhir_store._history import HistoryQuery, Version, fetch_history, fetch_version
from fhir_store._in_flight import InFlight
from fhir_store._json import loads
from fhir_store._patch import apply_json_patch
from fhir_store._patch_entries import check_patched, patch_entries
from fhir_store._planning import plan_in_background
from fhir_store._reindex import BATCH, reindex_batch
from fhir_store._requests import Entry, parse_condition, parse_identifier
from fhir_store._resources import check_id, check_resource, check_type
from fhir_store._search import SearchPage, SearchQuery, run_search
from fhir_store._storage import fetch_current, search_rows
from fhir_store._validation import prevalidate
from fhir_store._writer import can_mirror, create_read_engine, create_write_engine
from fhir_store.errors import (
    FhirStoreError,
    Gone,
    NotFound,
    PayloadTooLarge,
    StoreUnavailable,
    VersionConflict,
)

__all__ = ["FhirStore"]

P = ParamSpec("P")
T = TypeVar("T")


DEFAULT_MAX_BUNDLE_ENTRIES = 10_000  # the largest Synthea Bundle has 3,419
# How long closing waits for work still running on the store's own connections (a long write).
CLOSE_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class _Settings:
    validate_structure: bool
    timezone: tzinfo
    max_bundle_entries: int
    check_references: bool


# Runs `work(connection)` in one write transaction and returns its result.
WriteRunner = Callable[[Callable[[Connection], Any]], Awaitable[Any]]


class FhirStore:
    """A FHIR R4 resource store over an `AsyncEngine` (SQLite or PostgreSQL).

    The schema must exist: call `fhir_store.migrate(engine)` once at start. Every write
    (create, update, conditional ones, the result of a PATCH, each entry of a batch or
    transaction) is checked against the `fhir.resources` R4B models; an invalid resource is
    refused with InvalidResource (422) naming the element path. `validate_structure=False`
    turns that off (it costs a fraction of a millisecond per resource; see
    bench/fhir_validation_cost.py). `timezone` is the offset written in `meta.lastUpdated`.
    A Bundle of more than `max_bundle_entries` entries is refused with PayloadTooLarge (413).
    A `Type/id` reference to a resource that is neither stored nor in the same Bundle is
    refused (400, HAPI's referential integrity on write); `check_references=False` accepts it,
    for writers whose messages arrive in any order and converge by deterministic ids (a lab
    result before the registration of its patient).
    The store opens write connections of its own on the same database: close it (`aclose`).
    A host that already serialises writes to the database (greenchannel's engine on SQLite)
    passes `run_write`, which runs one write transaction on a synchronous `Connection` and
    returns its result; the store then uses that instead of connections of its own.
    With `own_readers`, reads and searches run in one worker thread each on read connections
    of the store's own (one thread hop instead of one per statement through aiosqlite): for
    a caller that reads much and closes the store (the pathway subscriber); without it, reads
    use the caller's engine and a store that only reads needs no closing.
    With `resolve_in_background`, each group of `transaction_many` is resolved in the store's
    background process (`_planning`) and the write transaction only checks and writes it: for
    a writer of many groups in a process whose Python is the bound (the FHIR destination), on
    an SQLite file (elsewhere the option does nothing).
    """

    def __init__(
        self,
        database: AsyncEngine,
        *,
        validate_structure: bool = True,
        timezone: tzinfo = UTC,
        run_write: WriteRunner | None = None,
        max_bundle_entries: int = DEFAULT_MAX_BUNDLE_ENTRIES,
        check_references: bool = True,
        own_readers: bool = False,
        resolve_in_background: bool = False,
    ) -> None:
        self._database = database
        self._run_write = run_write
        self._writer: Engine | None = None
        self._mirrors = True  # whether the database has a synchronous twin, as far as known
        self._reader: Engine | None = None
        self._read_mirrors = own_readers  # whether to open read connections of its own
        self._in_flight = InFlight()  # work in threads on those two engines
        self._sqlite = database.dialect.name == "sqlite"
        # SQLite only: on PostgreSQL the background's reads and the write's check are round
        # trips and server CPU, and there the machine binds, not this process's Python
        self._resolve_in_background = (
            resolve_in_background and self._sqlite and can_mirror(database.url)
        )
        self._settings = _Settings(
            validate_structure=validate_structure,
            timezone=timezone,
            max_bundle_entries=max_bundle_entries,
            check_references=check_references,
        )
        self._custom_problems: dict[str, str] | None = None  # None: custom params not read yet

    @property
    def database(self) -> AsyncEngine:
        """The engine the store writes to."""
        return self._database

    async def create(
        self, resource: dict[str, Any], *, if_none_exist: str | None = None
    ) -> dict[str, Any]:
        """Create a resource with a server-assigned id and return it as stored.

        With `if_none_exist` (`identifier=system|value`), an existing match is returned instead.
        """
        stored, _ = await self.conditional_create(resource, if_none_exist)
        return stored

    async def conditional_create(
        self, resource: dict[str, Any], if_none_exist: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Like `create`, also saying whether a resource was created (False: a match existed)."""
        checked = check_resource(resource)
        entry = Entry(index=0, method="POST", resource_type=checked["resourceType"])
        entry.resource = checked
        if if_none_exist:
            entry.condition = parse_condition(if_none_exist, "If-None-Exist")
        result = await self._apply([entry])
        return _resource_of(result), result["response"]["status"].startswith("201")

    async def update(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        if_match: int | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Create or update `resource_type/resource_id`; True if it was created.

        Content equal to the current version apart from `meta.versionId`/`lastUpdated` makes no
        new version: the current one is returned, so replays converge. `if_match` is the version
        the client last saw; another current version raises VersionConflict (412).
        """
        check_type(resource_type)
        check_id(resource_id)
        entry = Entry(index=0, method="PUT", resource_type=resource_type, resource_id=resource_id)
        entry.resource = check_resource(resource, expected_type=resource_type)
        entry.if_match = if_match
        result = await self._apply([entry])
        return _resource_of(result), result["response"]["status"].startswith("201")

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The current version of a resource; NotFound if it never existed, Gone if deleted."""
        check_type(resource_type)
        if not _valid_id(resource_id):
            raise NotFound("no resource with this id", expression=[f"{resource_type}.id"])
        key = (resource_type, resource_id)
        current = (await self._read(fetch_current, [key])).get(key)
        if current is None:
            raise NotFound(
                f"no {resource_type} with this id exists", expression=[f"{resource_type}.id"]
            )
        if current.deleted:
            raise Gone(
                f"this {resource_type} was deleted (version {current.version_id})",
                expression=[f"{resource_type}.id"],
            )
        return current.resource()

    async def read_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        """The current versions of several resources in one read, by (type, id); those that
        never existed or are deleted are left out. For callers that would otherwise read one
        resource at a time (the FHIR destination's merges, per batch of messages). A key that
        cannot name a resource (an unknown type, a malformed id) is left out as well."""
        wanted = [key for key in dict.fromkeys(keys) if _valid_key(*key)]
        if not wanted:
            return {}
        found = await self._read(fetch_current, wanted)
        return {key: current.resource() for key, current in found.items() if not current.deleted}

    async def delete(
        self, resource_type: str, resource_id: str, if_match: int | None = None
    ) -> int | None:
        """Delete a resource; returns the tombstone's version, or None if there was nothing.

        `if_match` is the version the client last saw: another current one raises 412.
        """
        check_type(resource_type)
        check_id(resource_id)
        entry = Entry(index=0, method="DELETE", resource_type=resource_type)
        entry.resource_id = resource_id
        entry.if_match = if_match
        return _deleted_version(await self._apply([entry]))

    async def vread(self, resource_type: str, resource_id: str, version_id: str) -> dict[str, Any]:
        """One version of a resource; NotFound if unknown, Gone if it is a deletion."""
        check_type(resource_type)
        where = [f"{resource_type}.meta.versionId"]
        if not _valid_id(resource_id) or not version_id.isdigit():
            raise NotFound(f"no {resource_type} version with this id", expression=where)
        version = await self._read(fetch_version, resource_type, resource_id, int(version_id))
        if version is None:
            raise NotFound(f"no {resource_type} version with this id exists", expression=where)
        if version.deleted:
            raise Gone(f"this version of the {resource_type} is its deletion", expression=where)
        return version.resource()

    async def history(self, query: HistoryQuery) -> tuple[int, list[Version]]:
        """The number of versions in the query's scope and its page of them, newest first.

        An instance history of a resource that never existed raises NotFound.
        """
        if query.resource_type is not None:
            check_type(query.resource_type)
        total, versions = await self._read(fetch_history, query)
        if query.resource_id is not None and total == 0 and query.since is query.at is None:
            raise NotFound(
                f"no {query.resource_type} with this id exists",
                expression=[f"{query.resource_type}.id"],
            )
        return total, versions

    async def patch(
        self,
        resource_type: str,
        resource_id: str,
        operations: object,
        if_match: int | None = None,
        *,
        fhirpath: bool = False,
    ) -> dict[str, Any]:
        """Apply a patch to the current version and store the result as a new version.

        `operations` is a JSON Patch (RFC 6902) document, or with `fhirpath` a FHIRPath Patch
        `Parameters` resource. A bad patch raises InvalidRequest (400) naming the operation; a
        result that is not a valid resource InvalidResource (422). Without `if_match`, a
        concurrent update between the read and the write makes the patch start again on the
        newer version.
        """
        apply = apply_fhirpath_patch if fhirpath else apply_json_patch
        for _ in range(3):
            current = await self.read(resource_type, resource_id)
            patched = apply(current, operations)
            check_patched(patched, resource_type, resource_id)
            seen = if_match if if_match is not None else int(current["meta"]["versionId"])
            try:
                stored, _ = await self.update(resource_type, resource_id, patched, seen)
            except VersionConflict:
                if if_match is not None:
                    raise
                continue
            return stored
        raise concurrent_write()

    def now(self) -> datetime:
        """The current time in the store's time zone (as written in meta.lastUpdated)."""
        return self._now()

    @property
    def timezone(self) -> tzinfo:
        """The time zone of `meta.lastUpdated`."""
        return self._settings.timezone

    async def conditional_update(
        self, resource_type: str, condition: str, resource: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Update the one resource matching `condition` (`identifier=system|value`), or create
        it if none matches; ConditionFailed (412) if several match. True if it was created."""
        check_type(resource_type)
        entry = Entry(index=0, method="PUT", resource_type=resource_type)
        entry.condition = parse_condition(condition, "request.url")
        entry.resource = check_resource(resource, expected_type=resource_type)
        result = await self._apply([entry])
        return _resource_of(result), result["response"]["status"].startswith("201")

    async def conditional_delete(self, resource_type: str, condition: str) -> int | None:
        """Delete the one resource matching `condition`; nothing if none matches,
        ConditionFailed (412) if several do. Returns the tombstone's version, if any."""
        check_type(resource_type)
        entry = Entry(index=0, method="DELETE", resource_type=resource_type)
        entry.condition = parse_condition(condition, "request.url")
        return _deleted_version(await self._apply([entry]))

    async def search_identifier(self, resource_type: str, identifier: str) -> list[dict[str, Any]]:
        """Current resources of a type with an identifier `system|value`, `|value` or `value`."""
        check_type(resource_type)
        token = parse_identifier(identifier)
        rows = await self._read(search_rows, resource_type, token)
        return [_loads(content) for _, content in rows]

    async def search(self, query: SearchQuery) -> SearchPage:
        """One page of the current resources matching a parsed search (`parse_search`)."""
        check_type(query.resource_type)
        return await self._read(run_search, query)

    async def search_compartment(
        self, compartment: str, focus_id: str, query: SearchQuery
    ) -> SearchPage:
        """`Patient/1/Observation?...`: a parsed search within the compartment of
        `compartment`/`focus_id` (only Patient compartments are served)."""
        check_type(query.resource_type)
        condition = in_compartment(compartment, focus_id, query.resource_type)
        return await self.search(replace(query, conditions=[*query.conditions, condition]))

    async def everything(self, query: EverythingQuery) -> SearchPage:
        """One page of `Patient/1/$everything` (or `Patient/1/*`): parse it with
        `parse_everything`; NotFound or Gone if the patient does not exist."""
        return await self._read(run_everything, query)

    # --- Custom search parameters (`_custom_params`) and `$reindex` (`_reindex`) ---

    async def search_parameters(self) -> dict[str, str]:
        """Make the store's SearchParameter resources searchable and indexed, if not done yet
        (at the first use; again after each write of one). Returns, by id, why any of them
        cannot be used. Call it before `parse_search` of a search that may use them."""
        if self._custom_problems is None:
            self._custom_problems = await self._read(load_custom_parameters)
        return self._custom_problems

    async def reindex(self, resource_types: Sequence[str]) -> int:
        """Extract the search index of every current resource of these types again, with
        today's parameters, in batches of their own transactions; returns how many."""
        for resource_type in resource_types:
            check_type(resource_type)
        await self.search_parameters()
        total = 0
        for resource_type in resource_types:
            after: str | None = None
            while True:
                count, after = await self._write(reindex_batch, resource_type, after, BATCH)
                total += count
                if after is None:
                    break
        return total

    async def _search_parameters_written(self) -> None:
        self._custom_problems = None
        await self.search_parameters()

    async def transaction(
        self, bundle: dict[str, Any], *, return_resources: bool = False
    ) -> dict[str, Any]:
        """Apply a transaction or batch Bundle and return the response Bundle.

        A transaction is atomic: a failing entry rolls everything back and raises the error with
        the entry index (`Bundle.entry[3]: ...`). A batch applies each entry on its own and
        reports failures as OperationOutcomes in the response entries.
        """
        (result,) = await self.transaction_many([bundle], return_resources=return_resources)
        if isinstance(result, FhirStoreError):
            raise result
        return result

    async def transaction_many(
        self,
        bundles: Sequence[dict[str, Any]],
        *,
        return_resources: bool = False,
        then: Callable[[Connection, list[dict[str, Any] | FhirStoreError]], None] | None = None,
    ) -> list[dict[str, Any] | FhirStoreError]:
        """Apply many Bundles in one database transaction, each atomic on its own.

        The Bundles are resolved in memory in order (a later one sees an earlier one's changes)
        and written together with a few bulk statements. Returns, per Bundle, its response
        Bundle or the FhirStoreError that kept it out (nothing of it is written). An error of
        the database itself (locked, connection lost) aborts all of them and raises
        StoreUnavailable. `then(connection, results)` runs last in the same transaction, so
        that a caller's own record of the writes (the engine's delivery attempts) commits
        with them; an error it raises rolls everything back.
        """
        if not bundles:
            return []
        results: list[dict[str, Any] | FhirStoreError | None] = [None] * len(bundles)
        accepted: dict[int, object] = {}  # the Bundles to write, PATCH entries made PUTs
        failed_patches: dict[int, dict[int, FhirStoreError]] = {}
        for index, bundle in enumerate(bundles):
            try:
                self._check_size(bundle)
                accepted[index], failed = await patch_entries(bundle, self.read)
            except FhirStoreError as error:
                results[index] = error
                continue
            if failed and isinstance(bundle, dict) and bundle.get("type") == "transaction":
                results[index] = failed[min(failed)]
                del accepted[index]
            elif failed:
                failed_patches[index] = failed
        if not accepted and then is None:
            return [result for result in results if result is not None]
        pending, now, settings = list(accepted.values()), self._now(), self._settings
        plan = None
        if self._resolve_in_background:
            await self.search_parameters()  # resolved with the custom parameters too
            plan = await plan_in_background(
                self._database.url,
                pending,
                now,
                settings.validate_structure,
                return_resources,
                settings.check_references,
            )
        # else a large group's validation runs in the background while the write thread works
        validating = settings.validate_structure and plan is None
        prevalidated = prevalidate(pending) if validating else None

        def apply(connection: Connection, unguarded: bool) -> list[dict[str, Any] | FhirStoreError]:
            written = write_plan(connection, plan) if plan is not None and unguarded else None
            if written is None:  # no plan, or what it read has changed since: resolved here
                written = apply_bundles(
                    connection,
                    pending,
                    now,
                    settings.validate_structure,
                    return_resources,
                    check_references=settings.check_references,
                    prevalidated=prevalidated,
                    unguarded=unguarded,
                )
            for index, result in zip(accepted, written, strict=True):
                if index in failed_patches and isinstance(result, dict):
                    _insert_failures(result, failed_patches[index])
                results[index] = result
            final = [result for result in results if result is not None]
            if then is not None:  # the caller's record of these writes commits with them
                then(connection, final)
            return final

        try:
            final = await self._write(apply, True)
        except LostRace:  # rolled back
            final = await self._write(apply, False)
        if accepted and touches_search_parameters(bundles):
            await self._search_parameters_written()
        return final

    def _check_size(self, bundle: object) -> None:
        entries = bundle.get("entry") if isinstance(bundle, dict) else None
        limit = self._settings.max_bundle_entries
        if isinstance(entries, list) and len(entries) > limit:
            raise PayloadTooLarge(
                f"the Bundle has {len(entries)} entries, more than this server accepts in one "
                f"({limit}, max_bundle_entries); split it into smaller Bundles",
                expression=["Bundle.entry"],
            )

    async def aclose(self) -> None:
        """Close the store's own read and write connections; the `database` engine is the
        caller's. Work asked of the store afterwards (a subscriber finishing while the engine
        stops) runs on that engine, instead of opening connections of its own again that
        nobody would close."""
        self._mirrors = self._read_mirrors = False
        # Work still running on them (its awaiting task cancelled) ends first: a connection
        # checked in after its pool was disposed would stay open on the server.
        await asyncio.to_thread(self._in_flight.close, CLOSE_WAIT_S)
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.dispose)
        reader, self._reader = self._reader, None
        if reader is not None:
            await asyncio.to_thread(reader.dispose)

    @asynccontextmanager
    async def closing(self, app: Any = None) -> AsyncIterator[None]:
        """A FastAPI lifespan (`APIRouter(lifespan=store.closing)`) that closes the store
        when the app stops: for a router that built its own store."""
        try:
            yield
        finally:
            await self.aclose()

    async def _apply(self, entries: list[Entry]) -> dict[str, Any]:
        responses = await self._write(
            apply_entries,
            entries,
            self._now(),
            self._settings.validate_structure,
            check_references=self._settings.check_references,
        )
        if any(entry.resource_type == "SearchParameter" for entry in entries):
            await self._search_parameters_written()
        return responses[0]

    async def _write(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `work(connection, *args)` in one write transaction, in one worker thread.

        SQLite takes its write lock first (BEGIN IMMEDIATE): concurrent writers queue on the
        busy timeout, and the reads of the work see the rows it then changes. A caller
        cancelled meanwhile does not stop the thread, which commits: a resent write is a replay
        and changes nothing. Without a synchronous twin (an in-memory SQLite database), the
        work runs on the caller's engine instead, a hop per statement.
        """

        if self._custom_problems is None:  # index with the custom parameters from the start
            await self.search_parameters()

        def run(connection: Connection) -> T:
            return work(connection, *args, **kwargs)

        try:
            if self._run_write is not None:
                with _database_errors():
                    result: T = await self._run_write(run)
                    return result
            writer = self._write_engine()
            with _database_errors():
                if writer is not None:
                    return await asyncio.to_thread(
                        self._in_flight.run, _in_transaction, writer, run
                    )
                async with self._database.begin() as connection:  # no synchronous twin
                    if self._sqlite:
                        await _begin_immediate(connection)
                    return await connection.run_sync(run)
        finally:
            ring(self._database.url)  # the change feeds of this process look at once

    async def _read(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `work(connection, *args)` on a read connection: in one worker thread on a
        synchronous engine (one hop for all its statements), or on the caller's engine (a hop
        per statement) when the database has no synchronous twin."""
        reader = self._read_engine()
        with _database_errors():
            if reader is not None:
                engine = reader

                def run() -> T:
                    with engine.connect() as connection:
                        return work(connection, *args, **kwargs)

                return await asyncio.to_thread(self._in_flight.run, run)
            async with self._database.connect() as connection:
                return await connection.run_sync(work, *args, **kwargs)

    def _read_engine(self) -> Engine | None:
        if self._reader is None and self._read_mirrors:
            self._reader = create_read_engine(self._database)
            self._read_mirrors = self._reader is not None
        return self._reader

    def _write_engine(self) -> Engine | None:
        if self._writer is None and self._mirrors:
            self._writer = create_write_engine(self._database)
            self._mirrors = self._writer is not None
        return self._writer

    def _now(self) -> datetime:
        return datetime.now(self._settings.timezone).replace(microsecond=0)


def _in_transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    with engine.begin() as connection:
        return work(connection)


@contextmanager
def _database_errors() -> Iterator[None]:
    """Database errors become store errors: a lost race, or an unavailable database."""
    try:
        yield
    except IntegrityError as error:
        raise concurrent_write() from error
    except PoolTimeout as error:  # SQLite's one writer connection stayed busy past pool_timeout
        raise StoreUnavailable(
            "the database connection for writes stayed busy with other writes too long; "
            "nothing was written, retry later and look for a long-running load if it persists"
        ) from error
    except (OperationalError, InterfaceError) as error:
        raise StoreUnavailable(
            f"the database did not complete the request ({type(error.orig).__name__}); "
            "nothing was written, retry later and check the database if it persists"
        ) from error
    except DBAPIError as error:
        if error.connection_invalidated:
            raise StoreUnavailable(
                "the database connection was lost; nothing was written, retry later"
            ) from error
        raise


async def _begin_immediate(connection: AsyncConnection) -> None:
    """On SQLite, take the write lock up front (BEGIN IMMEDIATE).

    The sqlite3 driver otherwise starts no transaction before the first write: reads before it
    would run outside the transaction, and a SAVEPOINT would open (and its RELEASE commit) the
    whole transaction.
    """
    raw = await connection.get_raw_connection()
    if not getattr(raw.driver_connection, "in_transaction", True):
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


def _resource_of(response_entry: dict[str, Any]) -> dict[str, Any]:
    resource = response_entry.get("resource")
    return resource if isinstance(resource, dict) else {}


def _deleted_version(response_entry: dict[str, Any]) -> int | None:
    etag = response_entry["response"].get("etag")
    return int(etag.removeprefix('W/"').removesuffix('"')) if isinstance(etag, str) else None


def _insert_failures(response: dict[str, Any], failed: dict[int, FhirStoreError]) -> None:
    """Put the batch's failed PATCH entries back in their places in the response Bundle."""
    entries = response.setdefault("entry", [])
    for index in sorted(failed):
        error = failed[index]
        entries.insert(index, error_entry(error))


def _valid_key(resource_type: str, resource_id: str) -> bool:
    try:
        check_type(resource_type)
    except FhirStoreError:
        return False
    return _valid_id(resource_id)


def _valid_id(resource_id: str) -> bool:
    try:
        check_id(resource_id)
    except FhirStoreError:
        return False
    return True


def _loads(content: str) -> dict[str, Any]:
    value: dict[str, Any] = loads(content)
    return value
