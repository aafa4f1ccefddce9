"""Keyset paging of searches: `next` and `previous` links that stay right while writes go on.

A page link carries a cursor (`_cursor`): the sort key of the last (next) or first (previous)
row of the page it was made from, the resource id last. The following page is the rows after
that key in the search's order, whatever was created, updated or deleted meanwhile: no row is
repeated and none skipped, unlike offsets, which shift when rows before them come or go. A
resource whose own sort value changes between two pages moves with it (it is then seen where
it now sorts, or not again if that is behind the cursor).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, or_, true

from fhir_store.errors import InvalidRequest

__all__ = ["Cursor", "KeyTerm", "beyond", "decode_cursor", "encode_cursor"]


@dataclass(frozen=True, slots=True)
class KeyTerm:
    """One term of a search's order: an expression and its direction."""

    expression: ColumnElement[Any]
    descending: bool


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page starts: after (`backward` False) or before the row whose order key is
    `key` (one value per KeyTerm), for a search ordered by `sort` (the `_sort` text)."""

    key: tuple[Any, ...]
    backward: bool
    sort: str


def encode_cursor(cursor: Cursor) -> str:
    """The cursor as URL-safe text."""
    values = [
        {"t": value.isoformat()} if isinstance(value, datetime) else value for value in cursor.key
    ]
    text = json.dumps({"k": values, "b": cursor.backward, "s": cursor.sort}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(text: str, sort: str) -> Cursor:
    """The cursor of a page link; InvalidRequest if it is damaged or made for another `_sort`."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        data = json.loads(raw.decode("utf-8"))
        values = tuple(
            datetime.fromisoformat(value["t"]) if isinstance(value, dict) else value
            for value in data["k"]
        )
        cursor = Cursor(values, bool(data["b"]), str(data["s"]))
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise _bad("is not a cursor this server made; follow the next and previous links") from None
    if cursor.sort != sort:
        raise _bad("was made for another _sort; keep the parameters of the link")
    return cursor


def beyond(terms: list[KeyTerm], cursor: Cursor) -> ColumnElement[bool]:
    """The rows after the cursor's key in the order of `terms` (before it, if `backward`):
    the first term past the key's value, or equal to it and the next term past, and so on."""
    if len(terms) != len(cursor.key):
        raise _bad("does not fit this search's order; keep the parameters of the link")
    alternatives: list[ColumnElement[bool]] = []
    equal: list[ColumnElement[bool]] = []
    for term, value in zip(terms, cursor.key, strict=True):
        alternatives.append(and_(true(), *equal, _past(term, value, cursor.backward)))
        equal.append(term.expression.is_(None) if value is None else term.expression == value)
    return or_(*alternatives)


def _past(term: KeyTerm, value: Any, backward: bool) -> ColumnElement[bool]:
    if value is None:  # only other missing values are level with a missing one
        return false()
    past: ColumnElement[bool]
    if term.descending != backward:
        past = term.expression < value
    else:
        past = term.expression > value
    return past


def _bad(reason: str) -> InvalidRequest:
    return InvalidRequest(f"search parameter '_cursor' {reason}", expression=["_cursor"])
