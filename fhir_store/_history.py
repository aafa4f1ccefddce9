"""Versions of resources: vread and instance, type and system history as `history` Bundles.

The versions come from `fhir_resource_version`, which keeps every version a write made,
deletions included; the current version's content comes from the resource row, which holds it.
The query functions take a synchronous `Connection` (run through `AsyncConnection.run_sync`);
`history_bundle` builds the Bundle a client gets.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    func,
    select,
)
from sqlalchemy.engine import Connection

from fhir_store._json import loads
from fhir_store.errors import InvalidRequest
from fhir_store.models import ResourceRow, ResourceVersionRow

__all__ = [
    "DEFAULT_COUNT",
    "MAX_COUNT",
    "HistoryQuery",
    "Version",
    "fetch_history",
    "fetch_version",
    "history_bundle",
    "parse_history_query",
]

DEFAULT_COUNT = 50
MAX_COUNT = 1000

_VERSION = cast(Table, ResourceVersionRow.__table__)
_RESOURCE = cast(Table, ResourceRow.__table__)
# The current version's content is kept once, in the resource row (models.ResourceVersionRow).
_CURRENT_CONTENT = (
    select(_RESOURCE.c.content)
    .where(
        _RESOURCE.c.resource_type == _VERSION.c.resource_type,
        _RESOURCE.c.id == _VERSION.c.resource_id,
        _RESOURCE.c.version_id == _VERSION.c.version_id,
    )
    .scalar_subquery()
)
_COLUMNS = (
    _VERSION.c.resource_type,
    _VERSION.c.resource_id,
    _VERSION.c.version_id,
    _VERSION.c.last_updated,
    _VERSION.c.deleted,
    _VERSION.c.method,
    func.coalesce(_VERSION.c.content, _CURRENT_CONTENT).label("content"),
)


@dataclass(frozen=True, slots=True)
class Version:
    """One stored version of a resource; `content` is None for a deletion."""

    resource_type: str
    resource_id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    method: str
    content: str | None

    def resource(self) -> dict[str, Any]:
        """The version's resource JSON (empty for a deletion)."""
        value: dict[str, Any] = loads(self.content) if self.content else {}
        return value


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """The scope and parameters of a history request."""

    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    at: datetime | None = None
    count: int = DEFAULT_COUNT
    offset: int = 0


def parse_history_query(
    pairs: list[tuple[str, str]],
    timezone: tzinfo,
    resource_type: str | None = None,
    resource_id: str | None = None,
) -> HistoryQuery:
    """Check `_since`, `_at`, `_count` and `_offset`; refuse any other parameter."""
    values: dict[str, Any] = {}
    for name, value in pairs:
        if name in values:
            raise InvalidRequest(f"{name} is given more than once", expression=[name])
        if name in ("_since", "_at"):
            values[name] = _instant(name, value, timezone)
        elif name in ("_count", "_offset"):
            if not value.isdigit():
                raise InvalidRequest(f"{name} must be a whole number such as 20", expression=[name])
            values[name] = int(value)
        elif name != "_format":
            raise InvalidRequest(
                f"'{name}' is not a history parameter; use _since, _at or _count",
                expression=[name],
            )
    count = min(values.get("_count", DEFAULT_COUNT), MAX_COUNT)
    return HistoryQuery(
        resource_type,
        resource_id,
        since=values.get("_since"),
        at=values.get("_at"),
        count=count,
        offset=values.get("_offset", 0),
    )


def fetch_version(
    connection: Connection, resource_type: str, resource_id: str, version_id: int
) -> Version | None:
    """One version of a resource, if it exists (a deletion is a version too)."""
    row = connection.execute(
        select(*_COLUMNS).where(
            _VERSION.c.resource_type == resource_type,
            _VERSION.c.resource_id == resource_id,
            _VERSION.c.version_id == version_id,
        )
    ).first()
    return Version(*row) if row is not None else None


def fetch_history(connection: Connection, query: HistoryQuery) -> tuple[int, list[Version]]:
    """The total number of versions in scope and one page of them, newest first."""
    selection = _scope(query)
    # counted without the contents, which the current versions take from the resource rows
    counted = selection.with_only_columns(_VERSION.c.version_id).subquery()
    total = connection.execute(select(func.count()).select_from(counted)).scalar_one()
    page = selection.order_by(
        _VERSION.c.last_updated.desc(),
        _VERSION.c.resource_type,
        _VERSION.c.resource_id,
        _VERSION.c.version_id.desc(),
    )
    rows = connection.execute(page.limit(query.count).offset(query.offset))
    return int(total), [Version(*row) for row in rows]


def history_bundle(
    versions: list[Version],
    total: int,
    base: str,
    links: dict[str, str],
    timezone: tzinfo,
) -> dict[str, Any]:
    """A `history` Bundle of `versions`; `base` is the server's base URL ending in '/'."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "total": total,
        "link": [{"relation": relation, "url": url} for relation, url in links.items()],
        "entry": [_entry(version, base, timezone) for version in versions],
    }


def _scope(query: HistoryQuery) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = []
    if query.resource_type is not None:
        conditions.append(_VERSION.c.resource_type == query.resource_type)
    if query.resource_id is not None:
        conditions.append(_VERSION.c.resource_id == query.resource_id)
    if query.since is not None:
        conditions.append(_VERSION.c.last_updated >= query.since)
    selection = select(*_COLUMNS).where(*conditions)
    if query.at is None:
        return selection
    # the version current at `at`: the newest of each resource not after it
    current = (
        select(
            _VERSION.c.resource_type.label("t"),
            _VERSION.c.resource_id.label("i"),
            func.max(_VERSION.c.version_id).label("v"),
        )
        .where(*conditions, _VERSION.c.last_updated <= query.at)
        .group_by(_VERSION.c.resource_type, _VERSION.c.resource_id)
        .subquery()
    )
    return selection.join(
        current,
        and_(
            _VERSION.c.resource_type == current.c.t,
            _VERSION.c.resource_id == current.c.i,
            _VERSION.c.version_id == current.c.v,
        ),
    )


def _entry(version: Version, base: str, timezone: tzinfo) -> dict[str, Any]:
    path = f"{version.resource_type}/{version.resource_id}"
    modified = version.last_updated.astimezone(timezone).isoformat()
    etag = f'W/"{version.version_id}"'
    entry: dict[str, Any] = {"fullUrl": f"{base}{path}"}
    if version.deleted:
        entry["request"] = {"method": "DELETE", "url": path}
        entry["response"] = {"status": "204 No Content", "etag": etag, "lastModified": modified}
        return entry
    resource = version.resource()
    modified = resource.get("meta", {}).get("lastUpdated", modified)
    entry["resource"] = resource
    method = version.method if version.method in ("POST", "PUT", "PATCH") else "PUT"
    created = method == "POST" or version.version_id == 1
    entry["request"] = {
        "method": method,
        "url": version.resource_type if method == "POST" else path,
    }
    entry["response"] = {
        "status": "201 Created" if created else "200 OK",
        "location": f"{path}/_history/{version.version_id}",
        "etag": etag,
        "lastModified": modified,
    }
    return entry


def _instant(name: str, value: str, timezone: tzinfo) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an instant such as 2024-05-01T08:00:00+08:00", expression=[name]
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone)
