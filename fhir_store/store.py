"""The FHIR store: versioned CRUD, identifier search and transaction/batch Bundles on SQLAlchemy.

Every public method is one unit of work: it opens its own session and database transaction.
`transaction_many` applies many Bundles in one database transaction, each atomic on its own
through a SAVEPOINT, which is how the FHIR destination gets its throughput.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from http import HTTPStatus
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fhir_store._bundle import BundleRun
from fhir_store._requests import Entry, parse_bundle, parse_condition, parse_identifier
from fhir_store._resources import check_id, check_resource, check_type
from fhir_store._storage import fetch_current, search_contents
from fhir_store.errors import (
    FhirStoreError,
    Gone,
    NotFound,
    StoreUnavailable,
    VersionConflict,
)

__all__ = ["FhirStore"]


@dataclass(frozen=True, slots=True)
class _Settings:
    validate_structure: bool
    timezone: tzinfo


class FhirStore:
    """A FHIR R4 resource store over an `AsyncEngine` (SQLite or PostgreSQL).

    The schema must exist: call `fhir_store.migrate(engine)` once at start. With
    `validate_structure`, resources are also checked against the `fhir.resources` R4B models
    (about 0.2 ms per resource). `timezone` is the offset written in `meta.lastUpdated`.
    """

    def __init__(
        self,
        database: AsyncEngine,
        *,
        validate_structure: bool = False,
        timezone: tzinfo = UTC,
    ) -> None:
        self._database = database
        self._sessions = async_sessionmaker(database, expire_on_commit=False)
        self._sqlite = database.dialect.name == "sqlite"
        self._settings = _Settings(validate_structure=validate_structure, timezone=timezone)

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
        result = await self._write([entry])
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
        result = await self._write([entry])
        return _resource_of(result), result["response"]["status"].startswith("201")

    async def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """The current version of a resource; NotFound if it never existed, Gone if deleted."""
        check_type(resource_type)
        if not _valid_id(resource_id):
            raise NotFound("no resource with this id", expression=[f"{resource_type}.id"])
        async with self._unit_of_work(write=False) as session:
            current = (await fetch_current(session, [(resource_type, resource_id)])).get(
                (resource_type, resource_id)
            )
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

    async def delete(self, resource_type: str, resource_id: str) -> int | None:
        """Delete a resource; returns the tombstone's version, or None if there was nothing."""
        check_type(resource_type)
        check_id(resource_id)
        entry = Entry(index=0, method="DELETE", resource_type=resource_type)
        entry.resource_id = resource_id
        return _deleted_version(await self._write([entry]))

    async def conditional_update(
        self, resource_type: str, condition: str, resource: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Update the one resource matching `condition` (`identifier=system|value`), or create
        it if none matches; ConditionFailed (412) if several match. True if it was created."""
        check_type(resource_type)
        entry = Entry(index=0, method="PUT", resource_type=resource_type)
        entry.condition = parse_condition(condition, "request.url")
        entry.resource = check_resource(resource, expected_type=resource_type)
        result = await self._write([entry])
        return _resource_of(result), result["response"]["status"].startswith("201")

    async def conditional_delete(self, resource_type: str, condition: str) -> int | None:
        """Delete the one resource matching `condition`; nothing if none matches,
        ConditionFailed (412) if several do. Returns the tombstone's version, if any."""
        check_type(resource_type)
        entry = Entry(index=0, method="DELETE", resource_type=resource_type)
        entry.condition = parse_condition(condition, "request.url")
        return _deleted_version(await self._write([entry]))

    async def search_identifier(self, resource_type: str, identifier: str) -> list[dict[str, Any]]:
        """Current resources of a type with an identifier `system|value`, `|value` or `value`."""
        check_type(resource_type)
        token = parse_identifier(identifier)
        async with self._unit_of_work(write=False) as session:
            contents = await search_contents(session, resource_type, token)
        return [_loads(content) for content in contents]

    async def transaction(
        self, bundle: dict[str, Any], *, return_resources: bool = False
    ) -> dict[str, Any]:
        """Apply a transaction or batch Bundle and return the response Bundle.

        A transaction is atomic: a failing entry rolls everything back and raises the error with
        the entry index (`Bundle.entry[3]: ...`). A batch applies each entry on its own and
        reports failures as OperationOutcomes in the response entries.
        """
        async with self._unit_of_work(write=True) as session:
            return await self._run_bundle(session, bundle, self._now(), return_resources)

    async def transaction_many(
        self, bundles: Sequence[dict[str, Any]], *, return_resources: bool = False
    ) -> list[dict[str, Any] | FhirStoreError]:
        """Apply many Bundles in one database transaction, each atomic on its own (SAVEPOINT).

        Returns, per Bundle, its response Bundle or the FhirStoreError that rolled it back. An
        error of the database itself (locked, connection lost) aborts all of them and raises
        StoreUnavailable.
        """
        results: list[dict[str, Any] | FhirStoreError] = []
        now = self._now()
        async with self._unit_of_work(write=True) as session:
            for bundle in bundles:
                try:
                    async with session.begin_nested():
                        results.append(
                            await self._run_bundle(session, bundle, now, return_resources)
                        )
                except FhirStoreError as error:
                    results.append(error)
                except IntegrityError as error:
                    results.append(_concurrent_write(error))
        return results

    async def _write(self, entries: list[Entry]) -> dict[str, Any]:
        async with self._unit_of_work(write=True) as session:
            run = BundleRun(session, self._now(), self._settings.validate_structure, label=False)
            responses = await run.apply(entries, return_resources=True)
        return responses[0]

    async def _run_bundle(
        self, session: AsyncSession, bundle: object, now: datetime, return_resources: bool
    ) -> dict[str, Any]:
        bundle_type, entries = parse_bundle(bundle)
        validate = self._settings.validate_structure
        if bundle_type == "transaction":
            run = BundleRun(session, now, validate, label=True)
            responses = await run.apply(entries, return_resources=return_resources)
        else:
            responses = []
            for entry in entries:
                try:
                    async with session.begin_nested():
                        run = BundleRun(session, now, validate, label=False)
                        responses.extend(await run.apply([entry], return_resources))
                except FhirStoreError as error:
                    responses.append(_error_entry(error))
                except IntegrityError as error:
                    responses.append(_error_entry(_concurrent_write(error)))
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid4()),
            "type": f"{bundle_type}-response",
            "entry": responses,
        }

    def _now(self) -> datetime:
        return datetime.now(self._settings.timezone).replace(microsecond=0)

    @asynccontextmanager
    async def _unit_of_work(self, *, write: bool) -> AsyncIterator[AsyncSession]:
        """One session and one database transaction; database errors become store errors."""
        try:
            async with self._sessions() as session, session.begin():
                if write and self._sqlite:
                    await _begin_immediate(session)
                yield session
        except IntegrityError as error:
            raise _concurrent_write(error) from error
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


async def _begin_immediate(session: AsyncSession) -> None:
    """On SQLite, take the write lock up front (BEGIN IMMEDIATE).

    The sqlite3 driver otherwise starts no transaction before the first write: reads before it
    would run outside the transaction, and a SAVEPOINT would open (and its RELEASE commit) the
    whole transaction. Taking the lock first also makes concurrent writers queue on
    `busy_timeout` instead of failing on a read-to-write lock upgrade.
    """
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    if not getattr(raw.driver_connection, "in_transaction", True):
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


def _concurrent_write(error: IntegrityError) -> VersionConflict:
    return VersionConflict(
        "another writer changed the same resource at the same time; nothing was written, "
        "resend the request",
        retryable=True,
    )


def _error_entry(error: FhirStoreError) -> dict[str, Any]:
    return {
        "response": {
            "status": _status_text(error.status),
            "outcome": error.to_operation_outcome(),
        }
    }


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _resource_of(response_entry: dict[str, Any]) -> dict[str, Any]:
    resource = response_entry.get("resource")
    return resource if isinstance(resource, dict) else {}


def _deleted_version(response_entry: dict[str, Any]) -> int | None:
    etag = response_entry["response"].get("etag")
    return int(etag.removeprefix('W/"').removesuffix('"')) if isinstance(etag, str) else None


def _valid_id(resource_id: str) -> bool:
    try:
        check_id(resource_id)
    except FhirStoreError:
        return False
    return True


def _loads(content: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(content)
    return value
