"""SQL over the store's tables for one unit of work: lookups, searches and batched writes.

Writes are staged per bundle and flushed with one executemany per statement, so a bundle of n
resources costs a handful of round trips rather than several per resource.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, delete, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from fhir_store._requests import IdentifierToken
from fhir_store._resources import identifier_tokens
from fhir_store.models import ResourceRow, ResourceVersionRow, TokenIndexRow

__all__ = ["Current", "StagedWrites", "fetch_current", "find_ids", "search_contents"]

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
    """The current row of a resource as read before a write."""

    version_id: int
    deleted: bool
    content: str | None
    _parsed: dict[str, Any] | None = None

    def resource(self) -> dict[str, Any]:
        """The current content, parsed once."""
        if self._parsed is None:
            self._parsed = json.loads(self.content or "{}")
        return self._parsed


@dataclass(slots=True)
class StagedWrites:
    """Row changes collected for one bundle and flushed together."""

    resource_inserts: list[dict[str, Any]] = field(default_factory=list)
    resource_updates: list[dict[str, Any]] = field(default_factory=list)
    version_inserts: list[dict[str, Any]] = field(default_factory=list)
    token_deletes: list[dict[str, Any]] = field(default_factory=list)
    token_inserts: list[dict[str, Any]] = field(default_factory=list)

    def put(
        self,
        resource_type: str,
        resource_id: str,
        resource: dict[str, Any],
        *,
        version_id: int,
        last_updated: datetime,
        method: str,
        current: Current | None,
    ) -> None:
        """Stage a new version of a resource (create, update or revive after delete)."""
        content = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        row = {"version_id": version_id, "last_updated": last_updated, "deleted": False}
        if current is None:
            self.resource_inserts.append(
                {"resource_type": resource_type, "id": resource_id, "content": content, **row}
            )
        else:
            self.resource_updates.append(_update_params(resource_type, resource_id, content, row))
        self.version_inserts.append(
            {
                "resource_type": resource_type,
                "resource_id": resource_id,
                "method": method,
                "content": content,
                **row,
            }
        )
        tokens = identifier_tokens(resource)
        if current is not None and not current.deleted:
            if identifier_tokens(current.resource()) == tokens:
                return  # index rows still right: rebuilt only when the identifiers changed
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

    def delete(
        self, resource_type: str, resource_id: str, *, version_id: int, last_updated: datetime
    ) -> None:
        """Stage the deletion of a current resource: a tombstone version, index rows removed."""
        row = {"version_id": version_id, "last_updated": last_updated, "deleted": True}
        self.resource_updates.append(_update_params(resource_type, resource_id, None, row))
        self.version_inserts.append(
            {
                "resource_type": resource_type,
                "resource_id": resource_id,
                "method": "DELETE",
                "content": None,
                **row,
            }
        )
        self.token_deletes.append({"b_type": resource_type, "b_id": resource_id})

    async def flush(self, session: AsyncSession) -> None:
        """Write everything staged, one executemany per kind of change, then forget it."""
        if self.resource_inserts:
            await session.execute(insert(_RESOURCE), self.resource_inserts)
        if self.resource_updates:
            await session.execute(_UPDATE_RESOURCE, self.resource_updates)
        if self.version_inserts:
            await session.execute(insert(_VERSION), self.version_inserts)
        if self.token_deletes:
            await session.execute(_DELETE_TOKENS, self.token_deletes)
        if self.token_inserts:
            await session.execute(insert(_TOKEN), self.token_inserts)
        for staged in (
            self.resource_inserts,
            self.resource_updates,
            self.version_inserts,
            self.token_deletes,
            self.token_inserts,
        ):
            staged.clear()


async def fetch_current(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
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
        result = await session.execute(
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


async def find_ids(
    session: AsyncSession, resource_type: str, token: IdentifierToken, *, limit: int | None = None
) -> list[str]:
    """Ids of current resources of `resource_type` with a matching identifier."""
    query = select(_TOKEN.c.resource_id).distinct().where(*_token_match(resource_type, token))
    if limit is not None:
        query = query.limit(limit)
    result = await session.execute(query.order_by(_TOKEN.c.resource_id))
    return list(result.scalars())


async def search_contents(
    session: AsyncSession, resource_type: str, token: IdentifierToken
) -> Sequence[str]:
    """The JSON content of the current resources of `resource_type` with a matching identifier."""
    matching = select(_TOKEN.c.resource_id).where(*_token_match(resource_type, token))
    result = await session.execute(
        select(_RESOURCE.c.content)
        .where(
            _RESOURCE.c.resource_type == resource_type,
            _RESOURCE.c.id.in_(matching),
            _RESOURCE.c.deleted.is_(False),
        )
        .order_by(_RESOURCE.c.id)
    )
    return [content for content in result.scalars() if content is not None]


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


def _update_params(
    resource_type: str, resource_id: str, content: str | None, row: dict[str, Any]
) -> dict[str, Any]:
    return {
        "b_type": resource_type,
        "b_id": resource_id,
        "b_version": row["version_id"],
        "b_updated": row["last_updated"],
        "b_deleted": row["deleted"],
        "b_content": content,
    }
