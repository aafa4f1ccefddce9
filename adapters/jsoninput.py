"""JSON payloads as mapping `Document`s: strict decoding, and `$.a.b[0]` / `@.c` paths.

Registered under the `greenchannel.parsers` entry point as "application/json". Paths start at the
whole document (`$`) or at the current item of an `each` (`@`); `.name` or `['odd name']` selects
a key, `[n]` an array element (0-based, negative from the end). Stepping into an array by name
maps over its elements, so `$.identifiers.value` reads every identifier's value.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from engine.errors import DecodeError, ParseError

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "JsonDocument", "parse_for_mapping"]

MAX_JSON_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 100
MEDIA_TYPE = "application/json"

_STEP = re.compile(r"\.([^\s.\[\]()'\",=!<>?]+)|\[(-?\d+)\]|\['((?:[^'\\]|\\.)*)'\]")
_Step = tuple[str | None, int | None]


class _DuplicateKeyError(ValueError):
    pass


class JsonDocument:
    """A decoded JSON value read through paths; `current` is the item of an `each`."""

    __slots__ = ("current", "media_type", "root")

    def __init__(self, root: Any, current: Any = None, media_type: str = MEDIA_TYPE) -> None:
        self.root = root
        self.current = root if current is None else current
        self.media_type = media_type

    def __repr__(self) -> str:
        return f"JsonDocument(media_type={self.media_type!r})"  # never the content

    def get(self, path: str) -> str | None:
        """The first non-empty scalar at `path` as text, or None."""
        for node in self._select(path):
            if isinstance(node, list):
                for item in node:
                    text = _scalar(item)
                    if text:
                        return text
            else:
                text = _scalar(node)
                if text:
                    return text
        return None

    def all(self, path: str) -> list[str]:
        """Every non-empty scalar at `path` as text, arrays flattened, in document order."""
        out: list[str] = []
        for node in self._select(path):
            for item in node if isinstance(node, list) else (node,):
                text = _scalar(item)
                if text:
                    out.append(text)
        return out

    def each(self, path: str) -> list[JsonDocument]:
        """One sub-document per element at `path` (arrays flattened); `@` paths resolve to it."""
        out: list[JsonDocument] = []
        for node in self._select(path):
            for item in node if isinstance(node, list) else (node,):
                if item is not None:
                    out.append(JsonDocument(self.root, item, self.media_type))
        return out

    def _select(self, path: str) -> list[Any]:
        compiled = _compile_path(path)
        if compiled is None:
            return []
        start, steps = compiled
        nodes: list[Any] = [self.root if start == "$" else self.current]
        for key, index in steps:
            following: list[Any] = []
            for node in nodes:
                if key is not None:
                    for item in node if isinstance(node, list) else (node,):
                        if isinstance(item, dict) and key in item:
                            following.append(item[key])
                elif isinstance(node, list) and index is not None:
                    if -len(node) <= index < len(node):
                        following.append(node[index])
            nodes = following
            if not nodes:
                break
        return nodes


@lru_cache(maxsize=4096)
def _compile_path(path: str) -> tuple[str, tuple[_Step, ...]] | None:
    if not path or path[0] not in "$@":
        return None
    steps: list[_Step] = []
    pos = 1
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None:
            return None
        name, number, quoted = match.groups()
        if name is not None:
            steps.append((name, None))
        elif number is not None:
            steps.append((None, int(number)))
        else:
            steps.append((re.sub(r"\\(.)", r"\1", quoted), None))
        pos = match.end()
    return path[0], tuple(steps)


def _scalar(value: Any) -> str | None:
    if type(value) is str:
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return str(value)
    return None


# --- decoding -----------------------------------------------------------------------------------


def parse_for_mapping(raw: bytes, charset: str) -> JsonDocument:
    """Decode and parse a JSON payload strictly: size and depth limits, no NaN/Infinity, no
    duplicate keys. Raises DecodeError (byte offset) or ParseError (JSON pointer, line, column).
    """
    if len(raw) > MAX_JSON_BYTES:
        raise ParseError(f"document is larger than {MAX_JSON_BYTES} bytes", ack_code="AR")
    text = _decode(raw, charset)
    try:
        data = json.loads(
            text,
            parse_float=Decimal,
            parse_int=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_object,
        )
    except json.JSONDecodeError as exc:
        raise _parse_error(text, exc.pos, exc.msg.lower()) from None
    except _DuplicateKeyError:
        stack, position = _walk(text, len(text), find_duplicate=True)
        raise _parse_error(text, position, "duplicate key", _stack_pointer(stack)) from None
    except RecursionError:
        raise _parse_error(
            text, _scan(text, max_depth=MAX_JSON_DEPTH), "nested too deeply"
        ) from None
    except ValueError as exc:  # NaN/Infinity, numbers too long
        reason = str(exc) if str(exc).startswith("not allowed") else "invalid number"
        raise ParseError(reason) from None
    pointer = _too_deep(data)
    if pointer is not None:
        raise ParseError(f"nested deeper than {MAX_JSON_DEPTH} levels", location=pointer)
    return JsonDocument(data)


def _decode(raw: bytes, charset: str) -> str:
    name = charset or "utf-8"
    try:
        if name.lower().replace("_", "-") in ("utf-8", "utf8") and raw.startswith(b"\xef\xbb\xbf"):
            return raw[3:].decode("utf-8")
        return raw.decode(name)
    except LookupError:
        raise DecodeError(
            "unknown character set", charset=name, offset=0, hint="check the channel's charset"
        ) from None
    except UnicodeDecodeError as exc:
        shift = 3 if raw.startswith(b"\xef\xbb\xbf") and name.lower() in ("utf-8", "utf8") else 0
        start, end = exc.start + shift, exc.end + shift
        span = f"byte {start}" if end - start <= 1 else f"bytes {start}–{end - 1}"
        raise DecodeError(
            f"{span} {'is' if end - start <= 1 else 'are'} not valid {name}",
            charset=name,
            offset=start,
            location=f"byte {start}",
        ) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not allowed: {name} is not JSON")


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateKeyError
    return result


def _parse_error(text: str, position: int, reason: str, pointer: str = "") -> ParseError:
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    pointer = pointer or _pointer_at(text, position)
    return ParseError(f"{reason} (line {line}, column {column})", location=pointer or "/")


def _too_deep(data: Any) -> str | None:
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(data, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            items: Any = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return _pointer(path)
        for key, value in items:
            if isinstance(value, dict | list):
                stack.append((value, depth + 1, (*path, str(key))))
    return None


def _pointer(parts: tuple[str, ...] | list[str]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class _Frame:
    __slots__ = ("index", "is_object", "key", "keys")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.key: str | None = None
        self.index = 0
        self.keys: set[str] = set()


def _walk(
    text: str, stop: int, *, find_duplicate: bool = False, max_depth: int = 0
) -> tuple[list[_Frame], int]:
    """Scan JSON text up to `stop` tracking containers; ends early at a duplicate key or at
    `max_depth`. Returns the open containers and where the scan ended. Only used on errors."""
    stack: list[_Frame] = []
    expecting_key = False
    i = 0
    end = min(stop, len(text))
    while i < end:
        ch = text[i]
        if ch == '"':
            try:
                value, after = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            except (ValueError, IndexError):
                return stack, i
            if stack and stack[-1].is_object and expecting_key:
                frame = stack[-1]
                if find_duplicate and value in frame.keys:
                    frame.key = value
                    return stack, i
                frame.keys.add(value)
                frame.key = value
                expecting_key = False
            i = after
            continue
        if ch in "{[":
            stack.append(_Frame(ch == "{"))
            expecting_key = ch == "{"
            if max_depth and len(stack) > max_depth:
                return stack, i
        elif ch in "}]":
            if stack:
                stack.pop()
            expecting_key = False
        elif ch == ",":
            if stack:
                if stack[-1].is_object:
                    expecting_key = True
                    stack[-1].key = None
                else:
                    stack[-1].index += 1
        i += 1
    return stack, i


def _scan(text: str, *, find_duplicate: bool = False, max_depth: int = 0) -> int:
    _, position = _walk(text, len(text), find_duplicate=find_duplicate, max_depth=max_depth)
    return position


def _pointer_at(text: str, position: int) -> str:
    stack, _ = _walk(text, position)
    return _stack_pointer(stack)


def _stack_pointer(stack: list[_Frame]) -> str:
    parts: list[str] = []
    for frame in stack:
        if frame.is_object:
            if frame.key is None:
                break
            parts.append(frame.key)
        else:
            parts.append(str(frame.index))
    return _pointer(parts)
