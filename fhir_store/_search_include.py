"""`_include` and `_revinclude`: the resources a page of search matches refers to, or is
referred to by, read from the reference index; `:iterate` follows them from included ones too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Select, Table, select
from sqlalchemy.engine import Connection

from fhir_store._param_rows import param_is
from fhir_store._resources import R4_RESOURCE_TYPES
from fhir_store._search_params import search_parameter
from fhir_store.errors import InvalidRequest, NotSupported
from fhir_store.models import ReferenceIndexRow, ResourceRow

__all__ = ["ANY", "MAX_INCLUDED", "Include", "included", "parse_include"]

# `_include=*`: every reference parameter (the source type and the code of such an Include).
ANY = "*"
# At most this many included resources per page; iteration stops there.
MAX_INCLUDED = 1000

_RESOURCE = cast(Table, ResourceRow.__table__)
_REFERENCE = cast(Table, ReferenceIndexRow.__table__)
_CHUNK = 500  # ids per IN list

Key = tuple[str, str]  # (resource type, id)


@dataclass(frozen=True, slots=True)
class Include:
    """One `_include` (`reverse` False) or `_revinclude`: follow `source_type`'s reference
    parameter `code`, to `target_type` only if given; `iterate` also from included resources.
    `_include=*` and `_revinclude=*` have ANY as source type and code."""

    source_type: str
    code: str
    target_type: str | None
    reverse: bool
    iterate: bool


def parse_include(name: str, value: str) -> Include:
    """`_include[:iterate]` or `_revinclude[:iterate]` with `Type:param` or
    `Type:param:TargetType`; InvalidRequest or NotSupported naming the parameter otherwise."""
    code, _, modifier = name.partition(":")
    if modifier not in ("", "iterate", "recurse"):  # R4 still allows :recurse for :iterate
        raise NotSupported(
            f"search parameter '{name}': the :{modifier} modifier is not supported",
            expression=[name],
        )
    if value == "*":  # every reference parameter (of any type, for _revinclude)
        return Include(ANY, ANY, None, code == "_revinclude", modifier != "")
    parts = value.split(":")
    if len(parts) not in (2, 3) or any(part not in R4_RESOURCE_TYPES for part in parts[::2]):
        raise InvalidRequest(
            f"search parameter '{name}' must be Type:parameter or Type:parameter:TargetType "
            "with R4 resource types",
            expression=[name],
        )
    parameter = search_parameter(parts[0], parts[1])
    if parameter is None or parameter.type != "reference":
        raise InvalidRequest(
            f"search parameter '{name}' does not name a reference search parameter of {parts[0]}",
            expression=[name],
        )
    target = parts[2] if len(parts) == 3 else None
    return Include(parts[0], parts[1], target, code == "_revinclude", modifier != "")


def included(connection: Connection, includes: list[Include], matches: list[Key]) -> list[str]:
    """The JSON contents of the current resources the includes reach from `matches`, none of
    them a match, each once, by type and id; at most MAX_INCLUDED."""
    seen = set(matches)
    found: list[Key] = []
    frontier = matches
    rules = includes
    while frontier and rules and len(found) < MAX_INCLUDED:
        reached: list[Key] = []
        for include in rules:
            for key in _follow(connection, include, frontier):
                if key not in seen:
                    seen.add(key)
                    reached.append(key)
        found += reached
        frontier = reached
        rules = [include for include in rules if include.iterate]
    return _contents(connection, sorted(found)[:MAX_INCLUDED])


def _follow(connection: Connection, include: Include, frontier: list[Key]) -> list[Key]:
    table = _REFERENCE
    reached: list[Key] = []
    for resource_type, ids in _by_type(frontier).items():
        if include.reverse:
            if include.target_type not in (None, resource_type):
                continue
            statement = select(table.c.resource_type, table.c.resource_id).where(
                table.c.target_type == resource_type
            )
            if include.code != ANY:
                statement = statement.where(
                    table.c.resource_type == include.source_type,
                    *param_is(table, include.source_type, include.code),
                )
        else:
            if include.source_type not in (ANY, resource_type):
                continue
            statement = select(table.c.target_type, table.c.target_id)
            if include.code != ANY:
                statement = statement.where(*param_is(table, resource_type, include.code))
            if include.target_type is not None:
                statement = statement.where(table.c.target_type == include.target_type)
        for chunk in _chunks(ids):
            if include.reverse:  # the rows naming these resources
                condition = table.c.target_id.in_(chunk)
            else:  # the rows of these resources, through the index by resource key
                condition = table.c.resource_key.in_(_keys(resource_type, chunk))
            rows = connection.execute(statement.where(condition))
            reached += [(row[0], row[1]) for row in rows]
    return reached


def _keys(resource_type: str, ids: list[str]) -> Select[tuple[int | None]]:
    return select(_RESOURCE.c.key).where(
        _RESOURCE.c.resource_type == resource_type, _RESOURCE.c.id.in_(ids)
    )


def _contents(connection: Connection, keys: list[Key]) -> list[str]:
    contents: dict[Key, str] = {}
    for resource_type, ids in _by_type(keys).items():
        for chunk in _chunks(ids):
            rows = connection.execute(
                select(_RESOURCE.c.id, _RESOURCE.c.content).where(
                    _RESOURCE.c.resource_type == resource_type,
                    _RESOURCE.c.deleted.is_(False),
                    _RESOURCE.c.id.in_(chunk),
                )
            )
            contents.update({(resource_type, row[0]): row[1] for row in rows if row[1]})
    return [contents[key] for key in keys if key in contents]


def _by_type(keys: Iterable[Key]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for resource_type, resource_id in keys:
        grouped[resource_type].append(resource_id)
    return grouped


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK)]
