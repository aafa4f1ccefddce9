"""The pure value functions of the mapping language: text, numbers, dates with time zones, ids.

Each takes already evaluated arguments and raises `ValueProblem` (reason, argument index) when an
input value cannot be used; the expression compiler turns that into a MappingError that names the
mapping rule and the input position, never the value.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from datetime import UTC, timedelta, tzinfo
from datetime import date as _date
from datetime import datetime as _datetime
from typing import Any

__all__ = [
    "VALUE_FUNCTIONS",
    "ValueProblem",
    "format_date",
    "format_datetime",
    "is_empty",
    "make_id",
    "to_text",
]

_HL7_DTM = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,9}))?)?)?)?)?)?"
    r"(?:([+-])(\d{2})(\d{2}))?"
)
_ISO_DTM = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?"
    r"(Z|([+-])(\d{2}):(\d{2}))?)?)?)?"
)
_ID_LENGTH = 32


class ValueProblem(Exception):
    """An argument value cannot be used; `argument` is its 0-based index, if known."""

    def __init__(self, reason: str, argument: int | None = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.argument = argument


def is_empty(value: Any) -> bool:
    """Null, empty text, empty list or empty object: what the output prunes."""
    return value is None or (not value and type(value) in (str, list, dict))


def to_text(value: Any, argument: int = 0) -> str | None:
    """A value as text for string functions and interpolation; lists and objects are refused."""
    if value is None or type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) in (int, float):
        return str(value)
    raise ValueProblem(f"expected text, got a {_kind(value)}", argument)


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# --- dates and times ----------------------------------------------------------------------------


class _Parts:
    __slots__ = ("day", "fraction", "hour", "minute", "month", "offset", "second", "year")

    def __init__(self, groups: tuple[str | None, ...], offset: str | None) -> None:
        self.year = int(groups[0] or 0)
        self.month = int(groups[1]) if groups[1] else None
        self.day = int(groups[2]) if groups[2] else None
        self.hour = int(groups[3]) if groups[3] else None
        self.minute = int(groups[4]) if groups[4] else None
        self.second = int(groups[5]) if groups[5] else None
        self.fraction = groups[6]
        self.offset = offset


def _parse_dtm(value: Any) -> _Parts:
    text = to_text(value)
    if text is None:
        raise ValueProblem("no value")
    text = text.strip()
    match = _HL7_DTM.fullmatch(text)
    if match is not None:
        g = match.groups()
        offset = None if g[7] is None else f"{g[7]}{g[8]}:{g[9]}"
        if g[7] is not None and (int(g[8]) > 14 or int(g[9]) > 59):
            raise ValueProblem("time zone offset out of range")
        parts = _Parts(g[:7], offset)
    else:
        match = _ISO_DTM.fullmatch(text)
        if match is None:
            raise ValueProblem("not a date/time (expected YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])")
        g = match.groups()
        offset = g[7]
        if g[8] is not None and (int(g[9]) > 14 or int(g[10]) > 59):
            raise ValueProblem("time zone offset out of range")
        parts = _Parts(g[:7], offset)
    try:
        _date(parts.year, parts.month or 1, parts.day or 1)
    except ValueError as exc:
        raise ValueProblem("not a valid calendar date") from exc
    if parts.year < 1:
        raise ValueProblem("not a valid calendar date")
    if (
        (parts.hour is not None and parts.hour > 23)
        or (parts.minute is not None and parts.minute > 59)
        or (parts.second is not None and parts.second > 59)
    ):
        raise ValueProblem("not a valid time of day")
    return parts


def format_date(value: Any) -> str | None:
    """A FHIR `date` (YYYY, YYYY-MM or YYYY-MM-DD) from an HL7 DTM or ISO text, precision kept."""
    if is_empty(value):
        return None
    parts = _parse_dtm(value)
    out = f"{parts.year:04d}"
    if parts.month is not None:
        out += f"-{parts.month:02d}"
        if parts.day is not None:
            out += f"-{parts.day:02d}"
    return out


def format_datetime(value: Any, zone: tzinfo, *, instant: bool = False) -> str | None:
    """A FHIR `dateTime` (or `instant`) keeping the given precision and offset.

    A value with a time but no offset takes `zone`. FHIR requires seconds once a time is given,
    so `HHMM` becomes `HH:MM:00`. An instant needs at least a day and an hour.
    """
    if is_empty(value):
        return None
    parts = _parse_dtm(value)
    day = format_date(value) if parts.hour is None else None
    if day is not None:
        if instant:
            raise ValueProblem("an instant needs a date and a time")
        return day
    assert parts.month is not None and parts.day is not None and parts.hour is not None
    minute = parts.minute or 0
    second = parts.second or 0
    offset = parts.offset
    if offset is None:
        local = _datetime(parts.year, parts.month, parts.day, parts.hour, minute, second)  # noqa: DTZ001 - wall time, zone applied next
        delta = zone.utcoffset(local)
        offset = _format_offset(delta if delta is not None else timedelta(0))
    fraction = f".{parts.fraction}" if parts.fraction else ""
    return (
        f"{parts.year:04d}-{parts.month:02d}-{parts.day:02d}"
        f"T{parts.hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"
    )


def _format_offset(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# --- ids ----------------------------------------------------------------------------------------


def make_id(*values: Any) -> str | None:
    """A stable FHIR id (32 lowercase hex chars of SHA-256) from the values, in order.

    Null or empty values count as empty text, so positions matter; all empty gives null. The id
    does not depend on the mapping, so an ADT and an ORU mapping agree on the same patient.
    """
    parts: list[str] = []
    for index, value in enumerate(values):
        text = to_text(value, index)
        parts.append(text or "")
    if not any(parts):
        return None
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:_ID_LENGTH]


# --- text, lists, numbers -----------------------------------------------------------------------


def _concat(*values: Any) -> str | None:
    out = "".join(to_text(v, i) or "" for i, v in enumerate(values))
    return out or None


def _join(values: Any, separator: Any = "") -> str | None:
    sep = to_text(separator, 1) or ""
    items = values if isinstance(values, list) else [values]
    texts = [t for t in (to_text(v, 0) for v in items) if t]
    return sep.join(texts) or None


def _text_fn(op: Callable[[str], str]) -> Callable[[Any], str | None]:
    def apply(value: Any) -> str | None:
        text = to_text(value)
        return None if text is None else op(text)

    return apply


def _substring(value: Any, start: Any, length: Any = None) -> str | None:
    text = to_text(value)
    if text is None:
        return None
    begin = _integer(start, 1)
    if begin < 0:
        raise ValueProblem("start must not be negative", 1)
    if length is None:
        return text[begin:]
    count = _integer(length, 2)
    if count < 0:
        raise ValueProblem("length must not be negative", 2)
    return text[begin : begin + count]


def _replace(value: Any, old: Any, new: Any) -> str | None:
    text = to_text(value)
    if text is None:
        return None
    pattern = to_text(old, 1)
    if not pattern:
        raise ValueProblem("the text to replace must not be empty", 1)
    return text.replace(pattern, to_text(new, 2) or "")


def _split(value: Any, separator: Any) -> list[str]:
    text = to_text(value)
    sep = to_text(separator, 1)
    if not sep:
        raise ValueProblem("the separator must not be empty", 1)
    if not text:
        return []
    return [part for part in text.split(sep) if part]


def _first(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _last(value: Any) -> Any:
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _at(value: Any, index: Any) -> Any:
    position = _integer(index, 1)
    items = value if isinstance(value, list) else ([] if value is None else [value])
    if -len(items) <= position < len(items):
        return items[position]
    return None


def _integer(value: Any, argument: int) -> int:
    if type(value) is int:
        return value
    text = to_text(value, argument)
    try:
        return int(text or "")
    except ValueError as exc:
        raise ValueProblem("expected a whole number", argument) from exc


def _number(value: Any) -> int | float | None:
    if is_empty(value):
        return None
    if type(value) in (int, float):
        return value  # type: ignore[no-any-return]
    text = (to_text(value) or "").strip()
    try:
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        number = float(text)
    except ValueError as exc:
        raise ValueProblem("not a number") from exc
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueProblem("not a finite number")
    return number


def _is_number(value: Any) -> bool:
    """Whether `number()` would give a finite number (`0.01` yes; `<0.01`, `阴性`, null no)."""
    if is_empty(value) or isinstance(value, bool | list | dict):
        return False
    try:
        return _number(value) is not None
    except ValueProblem:
        return False


def _is_datetime(value: Any) -> bool:
    """Whether `datetime()` would read the value (`20091015` yes; `20091051`, `unknown`, null no):
    lets a mapping keep a sender's impossible date as text where FHIR has a slot for that."""
    if is_empty(value) or isinstance(value, bool | list | dict):
        return False
    try:
        return format_datetime(value, UTC) is not None
    except ValueProblem:
        return False


def _is_id(value: Any) -> bool:
    """Whether the text can be a FHIR `id` (1-64 of A-Z a-z 0-9 - .): a sender's message or
    order number often can, but not always."""
    text = to_text(value)
    return text is not None and re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", text) is not None


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, list | dict):
        return len(value)
    return 1


def _contains(value: Any, part: Any) -> bool:
    text = to_text(value)
    needle = to_text(part, 1)
    return text is not None and needle is not None and needle in text


def _starts_with(value: Any, part: Any) -> bool:
    text = to_text(value)
    needle = to_text(part, 1)
    return text is not None and needle is not None and text.startswith(needle)


def _ends_with(value: Any, part: Any) -> bool:
    text = to_text(value)
    needle = to_text(part, 1)
    return text is not None and needle is not None and text.endswith(needle)


def _string(value: Any) -> str | None:
    return to_text(value) or None


def _base64(value: Any) -> str | None:
    """The text's UTF-8 bytes in base64: what a FHIR `Attachment.data` (base64Binary) holds."""
    text = to_text(value)
    return base64.b64encode(text.encode("utf-8")).decode("ascii") if text else None


# name -> (minimum arguments, maximum arguments or None for any, function)
VALUE_FUNCTIONS: dict[str, tuple[int, int | None, Callable[..., Any]]] = {
    "concat": (1, None, _concat),
    "join": (1, 2, _join),
    "upper": (1, 1, _text_fn(str.upper)),
    "lower": (1, 1, _text_fn(str.lower)),
    "trim": (1, 1, _text_fn(str.strip)),
    "normalize_space": (1, 1, _text_fn(lambda text: " ".join(text.split()))),
    "substring": (2, 3, _substring),
    "replace": (3, 3, _replace),
    "split": (2, 2, _split),
    "first": (1, 1, _first),
    "last": (1, 1, _last),
    "at": (2, 2, _at),
    "number": (1, 1, _number),
    "is_number": (1, 1, _is_number),
    "is_datetime": (1, 1, _is_datetime),
    "is_id": (1, 1, _is_id),
    "string": (1, 1, _string),
    "base64": (1, 1, _base64),
    "count": (1, 1, _count),
    "contains": (2, 2, _contains),
    "starts_with": (2, 2, _starts_with),
    "ends_with": (2, 2, _ends_with),
    "exists": (1, 1, lambda value: not is_empty(value)),
    "empty": (1, 1, is_empty),
    "date": (1, 1, format_date),
    "id": (1, None, make_id),
}
