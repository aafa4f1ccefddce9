"""Search modifiers answered from rows of their own or by path: token `:text` and `:of-type`,
reference `:identifier`, uri `:above` and `:below`, and clear refusals for token `:in`,
`:not-in`, `:above` and `:below` (they need a terminology server).

The index keeps the rows of `code:text` (CodeableConcept.text, Coding.display) in the string
table, and those of `code:of-type` and `code:identifier` in the token table
(`_indexing.modifier_param`).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, and_, or_, select

from fhir_store._indexing import modifier_param, normalise
from fhir_store._search_params import modifier_rows_code
from fhir_store.errors import InvalidRequest, NotSupported
from fhir_store.models import StringIndexRow, TokenIndexRow

__all__ = ["OWN_ROWS", "logical_reference_rows", "modifier_rows", "uri_above", "uri_below"]

_TOKEN = cast(Table, TokenIndexRow.__table__)
_STRING = cast(Table, StringIndexRow.__table__)

# (parameter type, modifier) answered from the rows of `code:modifier`.
OWN_ROWS = frozenset({("token", "text"), ("token", "of-type"), ("reference", "identifier")})
# Modifiers of the specification that need terminology (ValueSet expansion, subsumption).
_TERMINOLOGY = frozenset({"in", "not-in", "above", "below"})


def modifier_rows(
    resource_type: str, kind: str, name: str, values: list[str]
) -> Select[Any] | None:
    """For `code:modifier` of a parameter of type `kind`: a select of the numbers (`key`) of the
    resources of `resource_type` matching any of `values` (None if the modifier has no rows of
    its own).
    Token modifiers that need a terminology server are refused with NotSupported."""
    code, _, modifier = name.partition(":")
    if kind == "token" and modifier in _TERMINOLOGY:
        raise NotSupported(
            f"search parameter '{name}': :{modifier} needs a terminology server (ValueSet "
            "expansion or code subsumption), which this store does not have; search with the "
            "codes themselves, comma-separated",
            expression=[name],
        )
    if (kind, modifier) not in OWN_ROWS:
        return None
    param = modifier_param(modifier_rows_code(resource_type, code), modifier)
    matches: list[ColumnElement[bool]]
    if modifier == "text":
        table = _STRING
        matches = [
            table.c.normal.like(_escape_like(normalise(text)) + "%", escape="\\") for text in values
        ]
    else:
        table = _TOKEN
        matcher = _of_type if modifier == "of-type" else _identifier
        matches = [matcher(name, text) for text in values]
    return select(table.c.resource_key).where(
        table.c.resource_type == resource_type, table.c.param == param, or_(*matches)
    )


def logical_reference_rows(resource_type: str, code: str) -> Select[Any]:
    """The numbers (`key`) of the resources of `resource_type` with a logical reference (one
    with only an identifier) in the reference parameter `code`."""
    return select(_TOKEN.c.resource_key).where(
        _TOKEN.c.resource_type == resource_type,
        _TOKEN.c.param == modifier_param(modifier_rows_code(resource_type, code), "identifier"),
    )


def uri_below(column: ColumnElement[str], text: str) -> ColumnElement[bool]:
    """`:below`: the uri itself, or one under it by whole path segments (`http://a.org/fhir`
    is above `http://a.org/fhir/ValueSet/1`, not above `http://a.org/fhirx`)."""
    stem = text.rstrip("/")
    return or_(column == text, column == stem, column.like(_escape_like(stem) + "/%", escape="\\"))


def uri_above(column: ColumnElement[str], text: str) -> ColumnElement[bool]:
    """`:above`: the uri itself or any uri it lies under, by whole path segments (the parent
    paths of `text` after its scheme and host, with and without a trailing slash)."""
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "", text
    segments = rest.split("/")
    candidates = {text}
    for end in range(1, len(segments) + 1):
        path = "/".join(segments[:end])
        if not path:
            continue
        prefix = f"{scheme}://{path}" if separator else path
        candidates.update((prefix, prefix + "/"))
    return column.in_(sorted(candidates))


def _of_type(name: str, text: str) -> ColumnElement[bool]:
    """`identifier:of-type=system|code|value`: all three parts, the system may be empty."""
    parts = text.split("|")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InvalidRequest(
            f"search parameter '{name}' must be type-system|type-code|identifier-value, such "
            "as http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345",
            expression=[name],
        )
    system, code, value = parts
    system_match = _TOKEN.c.system == system if system else _TOKEN.c.system.is_(None)
    return and_(system_match, _TOKEN.c.value == f"{code}|{value}")


def _identifier(name: str, text: str) -> ColumnElement[bool]:
    """`subject:identifier=system|value`, `|value` or `value`, as a token."""
    if "|" not in text:
        return _TOKEN.c.value == text
    system, _, value = text.partition("|")
    if not value:
        raise InvalidRequest(
            f"search parameter '{name}' must be system|value or value", expression=[name]
        )
    if not system:
        return and_(_TOKEN.c.system.is_(None), _TOKEN.c.value == value)
    return and_(_TOKEN.c.system == system, _TOKEN.c.value == value)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
