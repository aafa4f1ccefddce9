"""Checks a score's input against its table's contract (scores.md §0), strictly.

Exactly the listed keys; JSON types as JSON means them (a boolean is not an integer, 3.0 is not
an integer, "3" is not a number); ranges without clamping; enums exact and case-sensitive;
lists without duplicates. The first problem found raises ScoreInputError naming the item and
what it allows.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, NoReturn

from pathways.scores.errors import ScoreInputError
from pathways.scores.tables import ItemSpec, ScoreTable

__all__ = ["MAX_INPUT_BYTES", "allowed", "check_input", "parse_json"]

_MAX_SHOWN = 40  # characters of a rejected value quoted in a message
MAX_INPUT_BYTES = 1024 * 1024  # the largest score input is an AIS list: a few kilobytes


def parse_json(raw: bytes | str) -> Any:
    """JSON text as Python values, as strictly as the contract reads them: NaN and Infinity
    are not JSON, and an object that repeats a key is refused rather than half-read."""
    if len(raw) > MAX_INPUT_BYTES:
        raise ScoreInputError("input", f"is larger than {MAX_INPUT_BYTES} bytes")
    try:
        return json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ScoreInputError(
            "input", f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ScoreInputError("input", f"is not UTF-8 (byte {exc.start})") from None
    except RecursionError:
        raise ScoreInputError("input", "is nested too deeply") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ScoreInputError(key, "is given twice in one JSON object")
        found[key] = value
    return found


def _no_constant(name: str) -> Any:
    raise ScoreInputError("input", f"{name} is not a JSON number")


def check_input(table: ScoreTable, data: object) -> dict[str, Any]:
    """`data` as a checked input object (the same values), or ScoreInputError."""
    if not isinstance(data, dict):
        raise ScoreInputError(
            "input", f"must be a JSON object with the items {', '.join(table.items)}"
        )
    _check_object(table.items, data, prefix="")
    for key, spec in table.items.items():
        _check_dependent_max(key, spec, data)
    return dict(data)


def allowed(spec: ItemSpec) -> str:
    """What an item allows, as the error messages and docs/scores.md say it."""
    if spec.type == "integer":
        text = _integer_range(spec)
        return f'{text} or "{spec.not_testable}"' if spec.not_testable else text
    if spec.type == "number":
        bounds = []
        if spec.above is not None:
            bounds.append(f"> {spec.above}")
        if spec.min is not None:
            bounds.append(f">= {spec.min}")
        if spec.max is not None:
            bounds.append(f"<= {spec.max}")
        return "a number " + " and ".join(bounds) if bounds else "a number"
    if spec.type == "boolean":
        return "true or false"
    if spec.type == "enum":
        return ", ".join(json.dumps(value) for value in spec.allowed_values())
    if spec.type == "list":
        values = ", ".join(json.dumps(value) for value in spec.allowed_values())
        return f"a list of distinct values from {values}"
    return f"a list of objects {_record(spec)}"


def _record(spec: ItemSpec) -> str:
    """`{"region": "head_neck"|"face"|..., "severity": 1..6}`: one object of a records item."""
    parts = []
    for name, field in (spec.fields or {}).items():
        if field.type == "enum":
            text = "|".join(json.dumps(value) for value in field.allowed_values())
        else:
            text = allowed(field)
        parts.append(f'"{name}": {text}')
    return "{" + ", ".join(parts) + "}"


def _integer_range(spec: ItemSpec) -> str:
    low = "" if spec.min is None else str(spec.min)
    if spec.max is None:
        return f"an integer >= {low}" if low else "an integer"
    return f"{low}..{spec.max}"


def _check_object(items: dict[str, ItemSpec], data: dict[Any, Any], prefix: str) -> None:
    for key in data:
        if key not in items:
            name = key if _plain(key) else _shown(key)
            raise ScoreInputError(
                f"{prefix}{name}", f"is not an item of this score; items: {', '.join(items)}"
            )
    for key in items:
        if key not in data:
            raise ScoreInputError(f"{prefix}{key}", "is missing (every item is required)")
    for key, spec in items.items():
        _check_value(spec, data[key], f"{prefix}{key}")


def _check_value(spec: ItemSpec, value: object, item: str) -> None:
    if spec.not_testable is not None and value == spec.not_testable and isinstance(value, str):
        return
    if spec.type == "integer":
        # type() rather than isinstance(): bool is a subclass of int, and 3.0 is not an integer.
        if type(value) is not int:
            _reject(spec, value, item, "" if spec.not_testable else "an integer is required")
        _check_bounds(spec, Decimal(value), value, item)
    elif spec.type == "number":
        if type(value) is int:
            number = Decimal(value)
        elif type(value) is float and math.isfinite(value):
            number = Decimal(str(value))
        else:
            _reject(spec, value, item, "a number is required")
        _check_bounds(spec, number, value, item)
    elif spec.type == "boolean":
        if type(value) is not bool:
            _reject(spec, value, item, "true or false is required")
    elif spec.type == "enum":
        if not isinstance(value, str) or value not in spec.allowed_values():
            _reject(spec, value, item)
    elif spec.type == "list":
        _check_list(spec, value, item)
    else:
        _check_records(spec, value, item)


def _check_bounds(spec: ItemSpec, number: Decimal, value: object, item: str) -> None:
    if (
        (spec.min is not None and number < spec.min)
        or (spec.max is not None and number > spec.max)
        or (spec.above is not None and number <= spec.above)
    ):
        _reject(spec, value, item)


def _check_list(spec: ItemSpec, value: object, item: str) -> None:
    if not isinstance(value, list):
        _reject(spec, value, item, "a JSON array is required")
    seen: set[str] = set()
    for index, element in enumerate(value):
        if not isinstance(element, str) or element not in spec.allowed_values():
            raise ScoreInputError(
                f"{item}[{index}]",
                f"{_shown(element)} is not allowed; allowed: {allowed(spec)}",
            )
        if element in seen:
            raise ScoreInputError(
                f"{item}[{index}]", f"{_shown(element)} is listed twice; allowed: {allowed(spec)}"
            )
        seen.add(element)


def _check_records(spec: ItemSpec, value: object, item: str) -> None:
    if not isinstance(value, list):
        _reject(spec, value, item, "a JSON array is required")
    fields = spec.fields or {}
    for index, record in enumerate(value):
        where = f"{item}[{index}]"
        if not isinstance(record, dict):
            raise ScoreInputError(
                where, f"{_shown(record)} is not allowed; allowed: {_record(spec)}"
            )
        _check_object(fields, record, prefix=f"{where}.")


def _check_dependent_max(key: str, spec: ItemSpec, data: dict[str, Any]) -> None:
    """A lower maximum that depends on another item's answer (mRS 0..5 before the stroke)."""
    value = data[key]
    for other, limits in spec.max_when.items():
        limit = limits.get(data[other])
        if limit is not None and type(value) is int and value > limit:
            raise ScoreInputError(
                key,
                f"{_shown(value)} is not allowed when {other} is {_shown(data[other])}; "
                f"allowed: {spec.min}..{limit}",
            )


def _reject(spec: ItemSpec, value: object, item: str, why: str = "") -> NoReturn:
    detail = f" ({why})" if why else ""
    raise ScoreInputError(item, f"{_shown(value)} is not allowed{detail}; allowed: {allowed(spec)}")


def _plain(key: object) -> bool:
    """Whether a key can name itself in a message as it is (else it is quoted as JSON)."""
    return isinstance(key, str) and 0 < len(key) <= _MAX_SHOWN and key.isprintable()


def _shown(value: object) -> str:
    """A rejected value as JSON writes it, cut short: the message must stay one short line."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = f"a {type(value).__name__}"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."
