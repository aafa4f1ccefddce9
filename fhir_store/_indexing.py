"""Index values of a resource, per search parameter type, extracted at write time.

Each parameter's values (FHIR JSON elements) become rows of the index table of its type:
string (accent-folded lower case, and exact), token (system, code), reference (type, id),
date (a UTC instant range as wide as the value's precision), number, quantity and uri.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from fhir_store._search_composite import composite_values
from fhir_store._search_params import LOGICAL_REFERENCE, element_names, index_plan

__all__ = [
    "DATE_MAX",
    "DATE_MIN",
    "ResourceIndex",
    "date_range",
    "decimal_range",
    "extract_index",
    "forget_plans",
    "modifier_param",
    "normalise",
    "split_reference",
]

DATE_MIN = datetime(1, 1, 1, tzinfo=UTC)
DATE_MAX = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

_DATE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
# The string parts of HumanName, Address and other complex types, in the order they are indexed.
_STRING_PARTS = (
    *("text", "family", "given", "prefix", "suffix", "line", "city", "district"),
    *("state", "postalCode", "country", "value"),
)


@dataclass(slots=True)
class ResourceIndex:
    """A resource's index rows, per table, without the resource's type and id."""

    strings: list[tuple[str, str, str]] = field(default_factory=list)  # param, normal, exact
    tokens: list[tuple[str, str | None, str]] = field(default_factory=list)  # param, system, code
    references: list[tuple[str, str, str]] = field(default_factory=list)  # param, type, id
    dates: list[tuple[str, datetime, datetime]] = field(default_factory=list)  # param, low, high
    numbers: list[tuple[str, float]] = field(default_factory=list)
    quantities: list[tuple[str, float, str | None, str | None]] = field(default_factory=list)
    uris: list[tuple[str, str]] = field(default_factory=list)


def extract_index(resource: dict[str, Any]) -> ResourceIndex:
    """The index rows of `resource` for every search parameter of its type."""
    index = ResourceIndex()
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return index
    present = element_names(resource)
    for first, code, adder, evaluate in _extractors(resource_type):
        if first is not None and first not in present:
            continue
        for value in evaluate(resource):
            adder(index, code, value)
    for kind, param, value in composite_values(resource_type, resource):
        _ADDERS[kind](index, param, value)
    index.strings = list(dict.fromkeys(index.strings))
    index.tokens = list(dict.fromkeys(index.tokens))
    index.references = list(dict.fromkeys(index.references))
    index.dates = list(dict.fromkeys(index.dates))
    return index


@lru_cache(maxsize=8192)
def normalise(text: str) -> str:
    """Lower case without accents, the form `string` search compares by default."""
    decomposed = unicodedata.normalize("NFKD", text)
    if decomposed.isascii():
        return decomposed.lower()
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def date_range(text: str) -> tuple[datetime, datetime] | None:
    """The UTC instants [low, high) a FHIR date, dateTime or instant stands for, as wide as its
    precision (`2020` is the whole year); a value without an offset is read as UTC."""
    match = _DATE.match(text)
    if match is None:
        return None
    year = int(match["year"])
    try:
        if match["month"] is None:
            low = datetime(year, 1, 1, tzinfo=UTC)
            return low, _add_months(low, 12)
        month = int(match["month"])
        if match["day"] is None:
            low = datetime(year, month, 1, tzinfo=UTC)
            return low, _add_months(low, 1)
        day = int(match["day"])
        if match["hour"] is None:
            low = datetime(year, month, day, tzinfo=UTC)
            return low, low + timedelta(days=1)
        zone = UTC if match["zone"] in (None, "Z") else _zone(match["zone"])
        second = int(match["second"] or 0)
        fraction = match["fraction"]
        micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
        low = datetime(
            year, month, day, int(match["hour"]), int(match["minute"]), second, micro, tzinfo=zone
        ).astimezone(UTC)
        if match["second"] is None:
            width = timedelta(minutes=1)
        elif fraction:
            width = timedelta(microseconds=10 ** max(0, 6 - len(fraction[1:])))
        else:
            width = timedelta(seconds=1)
        return low, low + width
    except (ValueError, OverflowError):
        return None


def split_reference(reference: str) -> tuple[str, str] | None:
    """(type, id) of a literal reference `Type/id`, also at the end of an absolute URL or with
    `/_history/n`; None for other forms (urn:uuid:, fragments)."""
    parts = reference.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-1]:
        return None
    return parts[-2], parts[-1]


def _add_months(moment: datetime, months: int) -> datetime:
    total = moment.month - 1 + months
    year = moment.year + total // 12
    if year > 9999:
        return DATE_MAX
    return moment.replace(year=year, month=total % 12 + 1)


def _zone(text: str) -> timezone:
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def _add_string(index: ResourceIndex, code: str, value: Any) -> None:
    if isinstance(value, str):
        if value:
            index.strings.append((code, normalise(value)[:200], value[:200]))
    elif isinstance(value, dict):  # HumanName, Address and other complex types: their parts
        for key in _STRING_PARTS:
            part = value.get(key)
            if part is None:
                continue
            if isinstance(part, list):
                for item in part:
                    _add_string(index, code, item)
            elif isinstance(part, str):
                _add_string(index, code, part)


def _add_token(index: ResourceIndex, code: str, value: Any) -> None:
    if isinstance(value, str):
        index.tokens.append((code, None, value))
    elif isinstance(value, bool):
        index.tokens.append((code, None, "true" if value else "false"))
    elif isinstance(value, dict):
        _add_token_extras(index, code, value)  # the rows of :text and :of-type
        codings = value.get("coding")
        if isinstance(codings, list):  # CodeableConcept
            for coding in codings:
                _add_token(index, code, coding)
            return
        system = value.get("system")
        system = system if isinstance(system, str) and system else None
        token = value.get("code")
        if not isinstance(token, str):
            token = value.get("value")  # Identifier, ContactPoint
            if system in _CONTACT_SYSTEMS:
                system = None  # ContactPoint.system is a kind (phone, email), not a namespace
        if isinstance(token, str) and token:
            index.tokens.append((code, system, token))


_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


# --- Rows for modifiers: `:text`, `:of-type` (token) and `:identifier` (reference). ---
# They live in the existing tables under the parameter's code with the modifier appended
# (`code:text`), a name no parameter has: no extra table, and `:missing` is not disturbed.


def modifier_param(code: str, modifier: str) -> str:
    """The `param` of the index rows that answer `code:modifier`."""
    return f"{code}:{modifier}"


def _add_token_extras(index: ResourceIndex, code: str, value: dict[str, Any]) -> None:
    """`:text` rows (CodeableConcept.text, Coding.display, Identifier.type's text and
    displays) as strings, and `:of-type` rows (Identifier.type coding, `code|value`) as tokens."""
    text = value.get("text")
    if isinstance(text, str):
        _add_string(index, modifier_param(code, "text"), text)
    display = value.get("display")
    if isinstance(display, str):
        _add_string(index, modifier_param(code, "text"), display)
    kind = value.get("type")
    if not isinstance(kind, dict):
        return
    _add_token_extras(index, code, kind)  # Identifier.type's text and displays
    identifier = value.get("value")
    codings = kind.get("coding")
    if not isinstance(identifier, str) or not isinstance(codings, list):
        return
    for coding in codings:
        system, type_code = coding.get("system"), coding.get("code")
        if isinstance(type_code, str):
            index.tokens.append(
                (
                    modifier_param(code, "of-type"),
                    system if isinstance(system, str) else None,
                    f"{type_code}|{identifier}",
                )
            )


def _add_reference_identifier(index: ResourceIndex, code: str, value: dict[str, Any]) -> None:
    """A logical reference's Reference.identifier, as a token row of `code:identifier`."""
    identifier = value["identifier"]
    if not isinstance(identifier, dict):
        return
    system, token = identifier.get("system"), identifier.get("value")
    if isinstance(token, str) and token:
        system = system if isinstance(system, str) and system else None
        index.tokens.append((modifier_param(code, "identifier"), system, token))


def _add_reference(index: ResourceIndex, code: str, value: Any) -> None:
    if isinstance(value, dict) and "identifier" in value:
        _add_reference_identifier(index, code, value)  # the rows of :identifier
    reference = value.get("reference") if isinstance(value, dict) else value
    if isinstance(reference, str):
        target = split_reference(reference)
        if target is not None:
            index.references.append((code, *target))


def _add_logical_reference(index: ResourceIndex, code: str, value: Any) -> None:
    """Only a logical reference's `:identifier` row: the typed ones are another parameter's
    rows (`rows_of`)."""
    if isinstance(value, dict) and "identifier" in value:
        _add_reference_identifier(index, code, value)


def _add_date(index: ResourceIndex, code: str, value: Any) -> None:
    if isinstance(value, str):
        found = date_range(value)
        if found is not None:
            index.dates.append((code, *found))
    elif isinstance(value, dict):  # Period (or Timing's bounds: not indexed)
        start, end = value.get("start"), value.get("end")
        if not isinstance(start, str) and not isinstance(end, str):
            return
        low = date_range(start) if isinstance(start, str) else None
        high = date_range(end) if isinstance(end, str) else None
        index.dates.append((code, low[0] if low else DATE_MIN, high[1] if high else DATE_MAX))


def _add_number(index: ResourceIndex, code: str, value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        index.numbers.append((code, float(value)))


def _add_quantity(index: ResourceIndex, code: str, value: Any) -> None:
    if not isinstance(value, dict):
        return
    number = value.get("value")
    if not isinstance(number, int | float) or isinstance(number, bool):
        return
    system = value.get("system")
    unit = value.get("code") or value.get("unit")
    index.quantities.append(
        (
            code,
            float(number),
            system if isinstance(system, str) else None,
            unit if isinstance(unit, str) else None,
        )
    )


def _add_uri(index: ResourceIndex, code: str, value: Any) -> None:
    if isinstance(value, str) and value:
        index.uris.append((code, value))


def decimal_range(text: str) -> tuple[float, float] | None:
    """The [low, high) interval a decimal search value stands for: `100` is 99.5 up to 100.5."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1)
    return float(number - half), float(number + half)


_ADDERS = {
    "string": _add_string,
    "token": _add_token,
    "reference": _add_reference,
    LOGICAL_REFERENCE: _add_logical_reference,
    "date": _add_date,
    "number": _add_number,
    "quantity": _add_quantity,
    "uri": _add_uri,
}


_Adder = Callable[[ResourceIndex, str, Any], None]
_Evaluator = Callable[[dict[str, Any]], list[Any]]


def forget_plans() -> None:
    """Drop the extraction plans: the search parameters changed (custom ones, `use_custom`)."""
    _extractors.cache_clear()


@lru_cache(maxsize=256)  # the R4 resource types, with room for unknown ones
def _extractors(resource_type: str) -> tuple[tuple[str | None, str, _Adder, _Evaluator], ...]:
    """Per resource type, once: (first element read, code, row adder, evaluator) per part."""
    return tuple(
        (first, code, _ADDERS[kind], evaluate)
        for first, code, kind, evaluate in index_plan(resource_type)
    )
