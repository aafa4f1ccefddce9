"""Search: a FHIR query string turned into SQL over the index tables, and its searchset Bundle.

Parameters are ANDed, comma-separated values of one parameter ORed. Supported: token
(`system|code`, `|code`, `code`, `system|`), string (starts-with on accent-folded lower case,
`:exact`, `:contains`), date, number and quantity prefixes (eq ne gt lt ge le sa eb ap, with the
value's precision as its range), reference (`Type/id`, `id`, `:Type`), uri (`:below`), and
`_id`, `_lastUpdated`, `_count`, `_offset`, `_total=accurate`.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import ColumnElement, Table, and_, false, func, not_, or_, select
from sqlalchemy.engine import Connection

from fhir_store._indexing import date_range, decimal_range, normalise, split_reference
from fhir_store._search_params import INDEXED_TYPES, search_parameter
from fhir_store.errors import InvalidRequest, NotSupported
from fhir_store.models import (
    DateIndexRow,
    NumberIndexRow,
    QuantityIndexRow,
    ReferenceIndexRow,
    ResourceRow,
    StringIndexRow,
    TokenIndexRow,
    UriIndexRow,
)

__all__ = ["SearchPage", "SearchQuery", "parse_search", "run_search", "search_bundle"]

DEFAULT_COUNT = 100
MAX_COUNT = 1000

_RESOURCE = cast(Table, ResourceRow.__table__)
_TABLES: dict[str, Table] = {
    "token": cast(Table, TokenIndexRow.__table__),
    "string": cast(Table, StringIndexRow.__table__),
    "reference": cast(Table, ReferenceIndexRow.__table__),
    "date": cast(Table, DateIndexRow.__table__),
    "number": cast(Table, NumberIndexRow.__table__),
    "quantity": cast(Table, QuantityIndexRow.__table__),
    "uri": cast(Table, UriIndexRow.__table__),
}
_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
# Result parameters this store ignores without harm (formatting is always JSON).
_IGNORED = frozenset({"_format", "_pretty"})


@dataclass(slots=True)
class SearchQuery:
    """A parsed search: the SQL conditions, paging, and the parameters that were ignored."""

    resource_type: str
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    total: bool = False
    ignored: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class SearchPage:
    """One page of matches (JSON content, by id), the total if counted, and whether more follow."""

    contents: list[str]
    total: int | None
    more: bool


def parse_search(resource_type: str, pairs: list[tuple[str, str]], *, strict: bool) -> SearchQuery:
    """Parse decoded query pairs. Unknown parameters are ignored and listed in the query
    (with `strict`, NotSupported); a bad value is InvalidRequest naming its parameter."""
    query = SearchQuery(resource_type, pairs=list(pairs))
    for name, value in pairs:
        code, _, modifier = name.partition(":")
        if code == "_count":
            query.count = min(_non_negative(name, value), MAX_COUNT)
        elif code == "_offset":
            query.offset = _non_negative(name, value)
        elif code == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise _bad(name, "must be none, estimate or accurate")
            query.total = value == "accurate"
        elif code in _IGNORED:
            continue
        elif code == "_id":
            _no_modifier(name, modifier)
            query.conditions.append(_RESOURCE.c.id.in_(_values(name, value)))
        elif code == "_lastUpdated":
            _no_modifier(name, modifier)
            query.conditions.append(
                or_(
                    *(
                        _instant(name, text, _RESOURCE.c.last_updated)
                        for text in _values(name, value)
                    )
                )
            )
        else:
            parameter = search_parameter(resource_type, code)
            if parameter is None or parameter.type not in INDEXED_TYPES:
                if strict:
                    raise NotSupported(
                        f"search parameter '{code}' is unknown or not supported for "
                        f"{resource_type}; drop it or send Prefer: handling=lenient",
                        expression=[name],
                    )
                query.ignored.append(name)
                continue
            table = _TABLES[parameter.type]
            matches = [
                _match(parameter.type, name, modifier, text, table) for text in _values(name, value)
            ]
            rows = select(table.c.resource_id).where(
                table.c.resource_type == resource_type, table.c.param == code, or_(*matches)
            )
            query.conditions.append(_RESOURCE.c.id.in_(rows))
    return query


def run_search(connection: Connection, query: SearchQuery) -> SearchPage:
    """The page of current resources matching `query`, by id."""
    where = [
        _RESOURCE.c.resource_type == query.resource_type,
        _RESOURCE.c.deleted.is_(False),
        *query.conditions,
    ]
    statement = (
        select(_RESOURCE.c.content)
        .where(*where)
        .order_by(_RESOURCE.c.id)
        .limit(query.count + 1)
        .offset(query.offset)
    )
    contents = [content for content in connection.execute(statement).scalars() if content]
    more = len(contents) > query.count
    contents = contents[: query.count]
    total: int | None = None
    if query.total and (more or query.offset):
        count = select(func.count()).select_from(_RESOURCE).where(*where)
        total = int(connection.execute(count).scalar_one())
    elif not more and (query.total or query.offset == 0):
        total = len(contents)  # the whole answer is on this page
    return SearchPage(contents, total, more)


def search_bundle(query: SearchQuery, page: SearchPage, url: str) -> dict[str, Any]:
    """The searchset Bundle of a page, with self and next links and an OperationOutcome entry
    listing the ignored parameters."""
    entries: list[dict[str, Any]] = []
    for content in page.contents:
        resource = json.loads(content)
        entries.append(
            {
                "fullUrl": f"{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
        )
    if query.ignored:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "warning",
                            "code": "not-supported",
                            "diagnostics": f"search parameter '{name}' is unknown or not "
                            "supported here and was ignored",
                            "expression": [name],
                        }
                        for name in query.ignored
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    links = [{"relation": "self", "url": url}]
    if page.more:
        links.append(
            {"relation": "next", "url": _with_offset(url, query, query.offset + query.count)}
        )
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = links
    bundle["entry"] = entries
    return bundle


def _with_offset(url: str, query: SearchQuery, offset: int) -> str:
    parts = urlsplit(url)
    pairs = [(name, value) for name, value in query.pairs if name not in ("_offset", "_count")]
    pairs += [("_count", str(query.count)), ("_offset", str(offset))]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(pairs), ""))


def _match(kind: str, name: str, modifier: str, text: str, table: Table) -> ColumnElement[bool]:
    if kind == "token":
        _no_modifier(name, modifier)
        return _token(text, table)
    if kind == "string":
        if modifier == "exact":
            return table.c.exact == text
        if modifier == "contains":
            return table.c.normal.like("%" + _like(normalise(text)) + "%", escape="\\")
        _no_modifier(name, modifier)
        return table.c.normal.like(_like(normalise(text)) + "%", escape="\\")
    if kind == "reference":
        return _reference(name, modifier, text, table)
    if kind == "date":
        _no_modifier(name, modifier)
        return _date(name, text, table)
    if kind == "number":
        _no_modifier(name, modifier)
        return _number(name, text, table.c.value)
    if kind == "quantity":
        _no_modifier(name, modifier)
        number, _, unit = text.partition("|")
        system, _, code = unit.partition("|") if "|" in unit else ("", "", unit)
        conditions = [_number(name, number, table.c.value)]
        if system:
            conditions.append(table.c.system == system)
        if code:
            conditions.append(table.c.code == code)
        return and_(*conditions)
    # uri
    if modifier == "below":
        return table.c.value.like(_like(text) + "%", escape="\\")
    _no_modifier(name, modifier)
    return table.c.value == text


def _token(text: str, table: Table) -> ColumnElement[bool]:
    if "|" not in text:
        return table.c.value == text
    system, _, code = text.partition("|")
    if not system:
        return and_(table.c.system.is_(None), table.c.value == code)
    if not code:
        return table.c.system == system
    return and_(table.c.system == system, table.c.value == code)


def _reference(name: str, modifier: str, text: str, table: Table) -> ColumnElement[bool]:
    if modifier and not modifier[:1].isupper():
        raise NotSupported(
            f"search parameter '{name}': the :{modifier} modifier is not supported",
            expression=[name],
        )
    target = split_reference(text)
    if target is not None:
        if modifier and modifier != target[0]:
            return false()
        return and_(table.c.target_type == target[0], table.c.target_id == target[1])
    if "/" in text or not text:
        raise _bad(name, "must be Type/id, an id or an absolute URL ending in Type/id")
    if modifier:
        return and_(table.c.target_type == modifier, table.c.target_id == text)
    return table.c.target_id == text


def _prefixed(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in _PREFIXES and not text[2].isalpha():
        return text[:2], text[2:]
    return "eq", text


def _date(name: str, text: str, table: Table) -> ColumnElement[bool]:
    prefix, rest = _prefixed(text)
    found = date_range(rest)
    if found is None:
        raise _bad(name, "must be a FHIR date or dateTime, optionally after a prefix such as ge")
    low, high = found
    row_low, row_high = table.c.low, table.c.high
    equal = and_(row_low >= low, row_high <= high)
    if prefix == "eq":
        return equal
    if prefix == "ne":
        return not_(equal)
    if prefix == "gt":
        return row_high > high
    if prefix == "lt":
        return row_low < low
    if prefix == "ge":
        return or_(row_high > high, equal)
    if prefix == "le":
        return or_(row_low < low, equal)
    if prefix == "sa":
        return row_low >= high
    if prefix == "eb":
        return row_high <= low
    margin = _approximate(low)
    return and_(row_low < high + margin, row_high > low - margin)


def _instant(name: str, text: str, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """A date comparison on a column holding one instant (the resource's lastUpdated)."""
    prefix, rest = _prefixed(text)
    found = date_range(rest)
    if found is None:
        raise _bad(name, "must be a FHIR date or dateTime, optionally after a prefix such as ge")
    low, high = found
    conditions: dict[str, ColumnElement[bool]] = {
        "eq": and_(column >= low, column < high),
        "ne": or_(column < low, column >= high),
        "gt": column >= high,
        "sa": column >= high,
        "lt": column < low,
        "eb": column < low,
        "ge": column >= low,
        "le": column < high,
    }
    if prefix in conditions:
        return conditions[prefix]
    margin = _approximate(low)
    return and_(column >= low - margin, column < high + margin)


def _approximate(moment: datetime) -> timedelta:
    """`ap`: 10% of the distance between the value and now, at least a day."""
    return max(abs(datetime.now(UTC) - moment) / 10, timedelta(days=1))


def _number(name: str, text: str, column: ColumnElement[Any]) -> ColumnElement[bool]:
    prefix, rest = _prefixed(text)
    found = decimal_range(rest)
    if found is None:
        raise _bad(name, "must be a decimal number, optionally after a prefix such as gt")
    low, high = found
    value = float(rest)
    if prefix == "eq":
        return and_(column >= low, column < high)
    if prefix == "ne":
        return or_(column < low, column >= high)
    if prefix in ("gt", "sa"):
        return column > value
    if prefix in ("lt", "eb"):
        return column < value
    if prefix == "ge":
        return column >= value
    if prefix == "le":
        return column <= value
    margin = abs(value) / 10
    return and_(column >= value - margin, column <= value + margin)


def _values(name: str, value: str) -> list[str]:
    """The comma-separated values of a parameter (`\\,` is a comma inside a value)."""
    values: list[str] = []
    current: list[str] = []
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    if not any(values):
        raise _bad(name, "has no value")
    return [text for text in values if text]


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _no_modifier(name: str, modifier: str) -> None:
    if modifier:
        raise NotSupported(
            f"search parameter '{name}': the :{modifier} modifier is not supported here",
            expression=[name],
        )


def _non_negative(name: str, value: str) -> int:
    if not value.isdigit():
        raise _bad(name, "must be a whole number ≥ 0")
    return int(value)


def _bad(name: str, reason: str) -> InvalidRequest:
    return InvalidRequest(f"search parameter '{name}' {reason}", expression=[name])
