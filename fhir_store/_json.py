"""The store's JSON: how it reads request bodies and stored resources, and how it writes them.

orjson (a Rust extension) parses and writes FHIR resources four to five times as fast as the
standard library; a Synthea transaction spent a tenth of the server's CPU in `json`. What it
writes is what the store wrote before: compact, non-ASCII kept as is, keys in their order.

Where the two differ, orjson is the stricter: it refuses a lone surrogate escape (`"\\ud800"`,
which is no UTF-8 text the store could keep or serve) and a number beyond a double's range
(`1e400`, which `json` read as infinity). Integers beyond 64 bits become floats, as every
decimal with a fraction already did with `json`. A value orjson cannot write (an integer
beyond 64 bits or a key that is no string, from a Python caller) is written by `json` instead.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["JSONDecodeError", "dumps", "dumps_bytes", "loads"]

JSONDecodeError = orjson.JSONDecodeError  # a json.JSONDecodeError: msg, lineno, colno

_FALLBACK = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def loads(data: bytes | memoryview | str) -> Any:
    """Parse JSON text (UTF-8 bytes, a view of them, or str); JSONDecodeError says what is
    wrong and where."""
    return orjson.loads(data)


def dumps_bytes(value: Any) -> bytes:
    """`value` as compact UTF-8 JSON, non-ASCII characters kept."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return _FALLBACK.encode(value).encode("utf-8")


def dumps(value: Any) -> str:
    """`value` as compact JSON text, non-ASCII characters kept (what the store keeps)."""
    try:
        return orjson.dumps(value).decode("utf-8")
    except orjson.JSONEncodeError:
        return _FALLBACK.encode(value)
