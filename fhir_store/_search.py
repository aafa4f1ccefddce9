"""Search: a FHIR query string turned into SQL over the index tables, and a page of matches.

Parameters are ANDed, comma-separated values of one parameter ORed. Supported: token
(`system|code`, `|code`, `code`, `system|`, `:not`, `:text`, `:of-type`), string (starts-with
on accent-folded lower case, `:exact`, `:contains`), date, number and quantity prefixes (eq ne
gt lt ge le sa eb ap, with the value's precision as its range), reference (`Type/id`, `id`,
`:Type`, `:identifier`), uri (`:below`, `:above`),
`:missing` on all of them, and `_id`, `_lastUpdated`, `_sort`, `_include`, `_revinclude`,
`_count`, `_cursor` (keyset paging, `_paging`), `_offset`, `_total=accurate`, `_summary`
(count, true, text, data), `_elements`. Composite parameters: `_search_composite`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    case,
    exists,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.engine import Connection

from fhir_store._indexing import date_range, decimal_range, normalise, split_reference
from fhir_store._paging import (
    Cursor,
    KeyTerm,
    beyond,
    decode_cursor,
    encode_cursor,
)
from fhir_store._param_rows import param_is
from fhir_store._search_chain import chained, is_chained
from fhir_store._search_composite import composite, composite_param, split_composite
from fhir_store._search_composite import refuse as refuse_composite
from fhir_store._search_include import Include, included, parse_include
from fhir_store._search_modifiers import (
    OWN_ROWS,
    logical_reference_rows,
    modifier_rows,
    uri_above,
    uri_below,
)
from fhir_store._search_params import INDEXED_TYPES, rows_of, search_parameter
from fhir_store._summary import SUMMARY_MODES
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

__all__ = ["SearchPage", "SearchQuery", "SortKey", "parse_search", "run_search", "sort_signature"]

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
_SORTABLE = frozenset({"string", "token", "date", "number", "quantity"})
_PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
_ELEMENT = re.compile(r"[a-z][A-Za-z0-9]*")
# Result parameters this store ignores without harm (formatting is always JSON).
_IGNORED = frozenset({"_format", "_pretty"})


@dataclass(frozen=True, slots=True)
class SortKey:
    """One `_sort` key: a parameter code, its type (or `_id`, `_lastUpdated`), and direction."""

    code: str
    kind: str
    descending: bool


@dataclass(slots=True)
class SearchQuery:
    """A parsed search: the SQL conditions, order, paging, includes, result shaping, and the
    parameters that were ignored."""

    resource_type: str
    conditions: list[ColumnElement[bool]] = field(default_factory=list)
    count: int = DEFAULT_COUNT
    offset: int = 0
    total: bool = False
    ignored: list[str] = field(default_factory=list)
    pairs: list[tuple[str, str]] = field(default_factory=list)
    sort: list[SortKey] = field(default_factory=list)
    includes: list[Include] = field(default_factory=list)
    summary_count: bool = False  # `_summary=count`: the total only
    summary: str | None = None  # `_summary=true|text|data`: how the resources are cut
    cursor: Cursor | None = None  # `_cursor`: where the page starts (`_paging`)
    elements: tuple[str, ...] = ()  # `_elements`: the top-level elements to keep, if any


@dataclass(slots=True)
class SearchPage:
    """One page of matches (JSON content, by id), the total if counted, whether more follow,
    and the resources `_include` and `_revinclude` added."""

    contents: list[str]
    total: int | None
    more: bool
    included: list[str] = field(default_factory=list)
    next_cursor: str | None = None  # `_cursor` of the next page, if there is one
    previous_cursor: str | None = None  # `_cursor` of the previous page, if there is one


def parse_search(resource_type: str, pairs: list[tuple[str, str]], *, strict: bool) -> SearchQuery:
    """Parse decoded query pairs. Unknown parameters are ignored and listed in the query
    (with `strict`, NotSupported); a bad value is InvalidRequest naming its parameter."""
    query = SearchQuery(resource_type, pairs=list(pairs))
    cursor_text: str | None = None
    for name, value in pairs:
        code, _, modifier = name.partition(":")
        if code == "_count":
            query.count = min(_non_negative(name, value), MAX_COUNT)
        elif code == "_offset":
            query.offset = _non_negative(name, value)
        elif code == "_cursor":
            cursor_text = value
        elif code == "_total":
            if value not in ("none", "estimate", "accurate"):
                raise _bad(name, "must be none, estimate or accurate")
            query.total = value == "accurate"
        elif code in _IGNORED:
            continue
        elif code in ("_include", "_revinclude"):
            query.includes.append(parse_include(name, value))
        elif code == "_summary":
            _no_modifier(name, modifier)
            if value not in ("count", "false", *SUMMARY_MODES):
                raise _bad(name, "must be true, text, data, count or false")
            query.summary_count = value == "count"
            query.summary = value if value in SUMMARY_MODES else None
        elif code == "_elements":
            _no_modifier(name, modifier)
            names = _values(name, value)
            if not all(_ELEMENT.fullmatch(text) for text in names):
                raise _bad(name, "must list top-level element names, such as name,birthDate")
            query.elements += tuple(names)
        elif code == "_sort":
            _no_modifier(name, modifier)
            query.sort = [_sort_key(resource_type, text) for text in _values(name, value)]
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
        elif is_chained(name):  # chains and `_has`: _search_chain.py
            chain = chained(resource_type, name, value, _chain_link, strict=strict)
            if chain is None:
                query.ignored.append(name)
            else:
                query.conditions.append(chain)
        else:
            parameter = search_parameter(resource_type, code)
            if parameter is not None and composite(resource_type, code) is not None:
                query.conditions.append(_composite(resource_type, name, value))
                continue
            # no parts: nothing is indexed for it (`_text`, `_content`, `_query`)
            if parameter is None or parameter.type not in INDEXED_TYPES or not parameter.parts:
                if strict:
                    raise NotSupported(
                        f"search parameter '{code}' is unknown or not supported for "
                        f"{resource_type}; drop it or send Prefer: handling=lenient",
                        expression=[name],
                    )
                query.ignored.append(name)
                continue
            query.conditions.append(_condition(resource_type, parameter.type, name, value))
    if cursor_text is not None:
        query.cursor = decode_cursor(cursor_text, sort_signature(query.sort))
    return query


def _chain_link(resource_type: str, name: str, value: str) -> list[ColumnElement[bool]]:
    """The conditions of the last link of a chain: one parameter, always strict."""
    return parse_search(resource_type, [(name, value)], strict=True).conditions


def sort_signature(sort: list[SortKey]) -> str:
    """The `_sort` a cursor belongs to, as text."""
    return ",".join(("-" if key.descending else "") + key.code for key in sort)


def run_search(connection: Connection, query: SearchQuery) -> SearchPage:
    """The page of current resources matching `query`, by id."""
    where = [
        _RESOURCE.c.resource_type == query.resource_type,
        _RESOURCE.c.deleted.is_(False),
        *query.conditions,
    ]
    if query.summary_count:
        count = select(func.count()).select_from(_RESOURCE).where(*where)
        return SearchPage([], int(connection.execute(count).scalar_one()), more=False)
    # the order, the id last so that it is total: the key a page cursor holds (`_paging`)
    dialect = connection.dialect.name
    terms = [term for key in query.sort for term in _sort_terms(key, dialect)]
    terms.append(KeyTerm(_RESOURCE.c.id, descending=False))
    cursor = query.cursor
    backward = cursor is not None and cursor.backward
    statement = (
        select(_RESOURCE.c.id, _RESOURCE.c.content, *(term.expression for term in terms))
        .where(*where, *([beyond(terms, cursor)] if cursor is not None else []))
        .order_by(
            *(
                term.expression.desc() if term.descending != backward else term.expression.asc()
                for term in terms
            )
        )
        .limit(query.count + 1)
        .offset(query.offset)
    )
    rows = [(row[0], row[1], tuple(row[2:])) for row in connection.execute(statement) if row[1]]
    more = len(rows) > query.count
    rows = rows[: query.count]
    if backward:
        rows.reverse()
    contents = [content for _, content, _ in rows]
    first_page = cursor is None and query.offset == 0
    total: int | None = None
    if query.total and (more or not first_page):
        count = select(func.count()).select_from(_RESOURCE).where(*where)
        total = int(connection.execute(count).scalar_one())
    elif not more and (query.total or first_page):
        total = len(contents)  # the whole answer is on this page
    has_next = more if not backward else True
    has_previous = more if backward else not first_page
    signature = sort_signature(query.sort)
    page = SearchPage(contents, total, has_next and bool(rows))
    if rows and has_next:
        page.next_cursor = encode_cursor(Cursor(rows[-1][2], False, signature))
    if rows and has_previous:
        page.previous_cursor = encode_cursor(Cursor(rows[0][2], True, signature))
    matches = [(query.resource_type, resource_id) for resource_id, _, _ in rows]
    page.included = included(connection, query.includes, matches)
    return page


def _condition(resource_type: str, kind: str, name: str, value: str) -> ColumnElement[bool]:
    """The condition on the resource table of one indexed parameter and its values."""
    code, _, modifier = name.partition(":")
    if modifier and (kind == "token" or (kind, modifier) in OWN_ROWS):
        own = modifier_rows(resource_type, kind, name, _values(name, value))
        if own is not None:
            return _RESOURCE.c.key.in_(own)
    table = _TABLES[kind]
    rows = select(table.c.resource_key).where(
        table.c.resource_type == resource_type, *param_is(table, resource_type, code)
    )
    if modifier == "missing":
        if value not in ("true", "false"):
            raise _bad(name, "must be true or false")
        # a resource is missing the parameter when it has no index row for it
        present: ColumnElement[bool] = _RESOURCE.c.key.in_(rows)
        if kind == "reference":  # a logical reference (identifier only) is a value too
            present = or_(present, _RESOURCE.c.key.in_(logical_reference_rows(resource_type, code)))
        return not_(present) if value == "true" else present
    if kind == "token" and modifier == "not":
        # R4: resources with no matching token, those without the element included (NOT IN:
        # every index row has its resource's number, never NULL, since f0006)
        matches = [_token(text, table) for text in _values(name, value)]
        return _RESOURCE.c.key.not_in(rows.where(or_(*matches)))
    matches = _matches(kind, name, modifier, _values(name, value), table)
    if kind == "date":
        # A date range (ge a year) matches most of a type's rows: checked for each candidate
        # the other parameters found, through the index by resource key, rather than listed
        # in full first, which SQLite does for IN (Observation?subject&date: 5x). The key
        # stands for the type too: the index (resource_key, param, low, high) answers alone.
        probe = select(table.c.pk).where(
            table.c.resource_key == _RESOURCE.c.key,
            *param_is(table, resource_type, code),
            or_(*matches),
        )
        return exists(probe)
    # By the resource's number, not its id: PostgreSQL then checks the few candidates that
    # other parameters found through the index by number, rather than reading every matching
    # row once per candidate (Observation?subject&code, 100 Synthea patients: 87 ms, not 2).
    return _RESOURCE.c.key.in_(rows.where(or_(*matches)))


def _composite(resource_type: str, name: str, value: str) -> ColumnElement[bool]:
    """A composite parameter: the second component's value, matched as its own type, in the
    rows written under the first component's token (`_search_composite`)."""
    code, _, modifier = name.partition(":")
    found = composite(resource_type, code)
    if found is None or modifier:
        raise refuse_composite(name, resource_type)
    table = _TABLES[found.kind]
    matches = []
    for text in _values(name, value):
        key, second = split_composite(name, text)
        params = [composite_param(searched, key) for searched in found.searched_as]
        matches.append(and_(table.c.param.in_(params), _match(found.kind, name, "", second, table)))
    rows = select(table.c.resource_key).where(table.c.resource_type == resource_type, or_(*matches))
    return _RESOURCE.c.key.in_(rows)


def _sort_key(resource_type: str, text: str) -> SortKey:
    descending = text.startswith("-")
    code = text.removeprefix("-")
    if code in ("_id", "_lastUpdated"):
        return SortKey(code, code, descending)
    parameter = search_parameter(resource_type, code)
    if parameter is None or parameter.type not in _SORTABLE:
        raise NotSupported(
            f"search parameter '_sort': '{code}' is unknown for {resource_type} or not a "
            "string, token, date, number or quantity parameter",
            expression=["_sort"],
        )
    # by the rows that hold its values (sortable types never filter references by type)
    return SortKey(rows_of(resource_type, code).code, parameter.type, descending)


def _sort_terms(key: SortKey, dialect: str) -> list[KeyTerm]:
    """ORDER BY terms of one key: resources without a value last, then the value. A resource
    with several values sorts by its lowest ascending and its highest descending (a date by
    the low bound of its range ascending, the high bound descending)."""
    if key.kind == "_id":
        return [KeyTerm(_RESOURCE.c.id, key.descending)]
    if key.kind == "_lastUpdated":
        return [KeyTerm(_RESOURCE.c.last_updated, key.descending)]
    table = _TABLES[key.kind]
    column_name = {"string": "normal", "date": "high" if key.descending else "low"}
    column: ColumnElement[Any] = table.c[column_name.get(key.kind, "value")]
    if key.kind in ("string", "token"):
        column = _binary(column, dialect)
    pick = func.max if key.descending else func.min
    value = (
        select(pick(column))
        .where(table.c.resource_key == _RESOURCE.c.key, table.c.param == key.code)
        .scalar_subquery()
    )
    return [KeyTerm(case((value.is_(None), 1), else_=0), False), KeyTerm(value, key.descending)]


def _binary(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """Text compared by code point on every database (PostgreSQL's default collation may
    ignore punctuation; SQLite's is already binary)."""
    if dialect == "postgresql":
        return column.collate("C")
    return column


def _matches(
    kind: str, name: str, modifier: str, values: list[str], table: Table
) -> list[ColumnElement[bool]]:
    """The conditions on `table`'s rows of a parameter's values, any of which may match.

    Several plain tokens or references (the pathway subscriber asks for a batch's patients at
    once) become one IN list per system or target type: a few clauses to build and one
    statement shape to compile, whatever the number of values, instead of an OR of pairs.
    """
    if len(values) < 2 or not (
        (kind == "token" and not modifier)
        or (kind == "reference" and (not modifier or modifier[:1].isupper()))
    ):
        return [_match(kind, name, modifier, text, table) for text in values]
    listed: dict[str | None, list[str]] = {}  # system or target type -> values
    others: list[ColumnElement[bool]] = []
    for text in values:
        if kind == "token":
            system, bar, code = text.partition("|") if "|" in text else ("", "", text)
            if bar and (not system or not code):
                others.append(_token(text, table))  # |code and system| as written
                continue
            listed.setdefault(system if bar else None, []).append(code)
            continue
        target = _reference_target(name, modifier, text)
        if target is not None:
            listed.setdefault(target[0], []).append(target[1])
    column, qualifier = (
        (table.c.value, table.c.system)
        if kind == "token"
        else (table.c.target_id, table.c.target_type)
    )
    for qualified, listed_values in listed.items():
        condition = (
            column.in_(listed_values) if len(listed_values) > 1 else column == listed_values[0]
        )
        others.append(condition if qualified is None else and_(qualifier == qualified, condition))
    return others or [false()]


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
        return uri_below(table.c.value, text)
    if modifier == "above":
        return uri_above(table.c.value, text)
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
    target = _reference_target(name, modifier, text)
    if target is None:
        return false()
    target_type, target_id = target
    if target_type is None:
        return table.c.target_id == target_id
    return and_(table.c.target_type == target_type, table.c.target_id == target_id)


def _reference_target(name: str, modifier: str, text: str) -> tuple[str | None, str] | None:
    """The (target type, or None for any, and id) one reference value matches; None when a
    `:Type` modifier names another type than the value's, so that nothing matches."""
    target = split_reference(text)
    if target is not None:
        return None if modifier and modifier != target[0] else target
    if "/" in text or not text:
        raise _bad(name, "must be Type/id, an id or an absolute URL ending in Type/id")
    return modifier or None, text


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
    values = value.split(",") if "\\" not in value else _escaped_values(value)
    if not any(values):
        raise _bad(name, "has no value")
    return [text for text in values if text]


def _escaped_values(value: str) -> list[str]:
    """The values of a parameter with `\\` escapes, empty ones included."""
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
    return values


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
