"""SQL over the store's tables: lookups, searches and the bulk write of a group's changes.

The functions take a synchronous `Connection`: writes run them in a worker thread on the
store's write engine, reads through `AsyncConnection.run_sync`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.engine import Connection

from fhir_store._requests import IdentifierToken
from fhir_store._resources import identifier_tokens
from fhir_store.models import ResourceRow, ResourceVersionRow, TokenIndexRow

__all__ = [
    "Current",
    "RowWrites",
    "fetch_current",
    "fetch_identifiers",
    "find_ids",
    "search_rows",
    "write_rows",
]

_RESOURCE = cast(Table, ResourceRow.__table__)
_VERSION = cast(Table, ResourceVersionRow.__table__)
_TOKEN = cast(Table, TokenIndexRow.__table__)
_CHUNK = 400  # keys per IN (...) list: under SQLite's and psycopg's parameter limits

_UPDATE_RESOURCE = (
    update(_RESOURCE)
    .where(_RESOURCE.c.resource_type == bindparam("b_type"), _RESOURCE.c.id == bindparam("b_id"))
    .values(
        version_id=bindparam("b_version"),
        last_updated=bindparam("b_updated"),
        deleted=bindparam("b_deleted"),
        content=bindparam("b_content"),
    )
)
_DELETE_TOKENS = delete(_TOKEN).where(
    _TOKEN.c.resource_type == bindparam("b_type"), _TOKEN.c.resource_id == bindparam("b_id")
)


@dataclass(slots=True)
class Current:
    """The current state of a resource: as read from the database, or as a group wrote it."""

    version_id: int
    deleted: bool
    content: str | None
    _parsed: dict[str, Any] | None = None
    _tokens: list[tuple[str | None, str]] | None = None
    last_updated: datetime | None = None

    def resource(self) -> dict[str, Any]:
        """The current content, parsed once."""
        if self._parsed is None:
            self._parsed = json.loads(self.content or "{}")
        return self._parsed

    def tokens(self) -> list[tuple[str | None, str]]:
        """The identifier tokens the search index holds for this state (none if deleted)."""
        if self._tokens is None:
            self._tokens = [] if self.deleted else identifier_tokens(self.resource())
        return self._tokens


@dataclass(slots=True)
class RowWrites:
    """The row changes of a group, written with one executemany per kind of change."""

    resource_inserts: list[dict[str, Any]] = field(default_factory=list)
    resource_updates: list[dict[str, Any]] = field(default_factory=list)
    version_inserts: list[dict[str, Any]] = field(default_factory=list)
    token_deletes: list[dict[str, Any]] = field(default_factory=list)
    token_inserts: list[dict[str, Any]] = field(default_factory=list)

    def resource(
        self, resource_type: str, resource_id: str, state: Current, *, exists: bool
    ) -> None:
        """Set the resource row of `resource_type/resource_id` to `state`."""
        if exists:
            self.resource_updates.append(
                {
                    "b_type": resource_type,
                    "b_id": resource_id,
                    "b_version": state.version_id,
                    "b_updated": state.last_updated,
                    "b_deleted": state.deleted,
                    "b_content": state.content,
                }
            )
        else:
            self.resource_inserts.append(
                {
                    "resource_type": resource_type,
                    "id": resource_id,
                    "version_id": state.version_id,
                    "last_updated": state.last_updated,
                    "deleted": state.deleted,
                    "content": state.content,
                }
            )

    def tokens(
        self,
        resource_type: str,
        resource_id: str,
        tokens: list[tuple[str | None, str]],
        *,
        replace: bool,
    ) -> None:
        """Index `tokens` for the resource, first dropping its old rows if `replace`."""
        if replace:
            self.token_deletes.append({"b_type": resource_type, "b_id": resource_id})
        self.token_inserts.extend(
            {
                "resource_type": resource_type,
                "resource_id": resource_id,
                "param": "identifier",
                "system": system,
                "value": value,
            }
            for system, value in tokens
        )


def write_rows(connection: Connection, writes: RowWrites) -> None:
    """Write a group's row changes: resources first (the other tables refer to them)."""
    if writes.resource_inserts:
        connection.execute(insert(_RESOURCE), writes.resource_inserts)
    if writes.resource_updates:
        connection.execute(_UPDATE_RESOURCE, writes.resource_updates)
    if writes.version_inserts:
        connection.execute(insert(_VERSION), writes.version_inserts)
    if writes.token_deletes:
        connection.execute(_DELETE_TOKENS, writes.token_deletes)
    if writes.token_inserts:
        connection.execute(insert(_TOKEN), writes.token_inserts)


def fetch_current(
    connection: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], Current]:
    """The current rows of the given (type, id) keys that exist, deleted ones included."""
    wanted = list(dict.fromkeys(keys))
    found: dict[tuple[str, str], Current] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        condition: ColumnElement[bool]
        if len(chunk) == 1:
            condition = (_RESOURCE.c.resource_type == chunk[0][0]) & (_RESOURCE.c.id == chunk[0][1])
        else:
            condition = tuple_(_RESOURCE.c.resource_type, _RESOURCE.c.id).in_(chunk)
        result = connection.execute(
            select(
                _RESOURCE.c.resource_type,
                _RESOURCE.c.id,
                _RESOURCE.c.version_id,
                _RESOURCE.c.deleted,
                _RESOURCE.c.content,
            ).where(condition)
        )
        for resource_type, resource_id, version_id, deleted, content in result:
            found[(resource_type, resource_id)] = Current(version_id, deleted, content)
    return found


def fetch_identifiers(
    connection: Connection, values: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
    """For (type, identifier value) pairs: the (id, system) of each current resource of the
    type with an identifier of that value, whatever its system."""
    wanted = [(resource_type, "identifier", value) for resource_type, value in set(values)]
    found: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
    for start in range(0, len(wanted), _CHUNK):
        result = connection.execute(
            select(
                _TOKEN.c.resource_type, _TOKEN.c.value, _TOKEN.c.resource_id, _TOKEN.c.system
            ).where(
                tuple_(_TOKEN.c.resource_type, _TOKEN.c.param, _TOKEN.c.value).in_(
                    wanted[start : start + _CHUNK]
                )
            )
        )
        for resource_type, value, resource_id, system in result:
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
    query = select(_TOKEN.c.resource_id).distinct().where(*_token_match(resource_type, token))
    if limit is not None:
        query = query.limit(limit)
    result = connection.execute(query.order_by(_TOKEN.c.resource_id))
    return list(result.scalars())


def search_rows(
    connection: Connection, resource_type: str, token: IdentifierToken
) -> list[tuple[str, str]]:
    """(id, JSON content) of the current resources of `resource_type` with a matching
    identifier, by id."""
    matching = select(_TOKEN.c.resource_id).where(*_token_match(resource_type, token))
    result = connection.execute(
        select(_RESOURCE.c.id, _RESOURCE.c.content)
        .where(
            _RESOURCE.c.resource_type == resource_type,
            _RESOURCE.c.id.in_(matching),
            _RESOURCE.c.deleted.is_(False),
        )
        .order_by(_RESOURCE.c.id)
    )
    return [(resource_id, content) for resource_id, content in result if content is not None]


def _token_match(resource_type: str, token: IdentifierToken) -> list[Any]:
    conditions: list[Any] = [
        _TOKEN.c.resource_type == resource_type,
        _TOKEN.c.param == "identifier",
        _TOKEN.c.value == token.value,
    ]
    if token.any_system:
        pass
    elif token.system is None:
        conditions.append(_TOKEN.c.system.is_(None))
    else:
        conditions.append(_TOKEN.c.system == token.system)
    return conditions
