"""JSON Patch (RFC 6902) with JSON Pointers (RFC 6901): a small, strict implementation.

Every error names the operation by its index in the patch document and says what is wrong
with its `path` or `from`; the patched values themselves never appear in messages.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fhir_store.errors import InvalidRequest

__all__ = ["JSON_PATCH", "apply_json_patch"]

JSON_PATCH = "application/json-patch+json"

_OPERATIONS = ("add", "remove", "replace", "move", "copy", "test")
_INDEX = re.compile(r"0|[1-9][0-9]*")
_MISSING = object()


def apply_json_patch(document: Any, patch: object) -> Any:
    """The result of applying `patch` (a JSON Patch document) to a copy of `document`.

    `document` is left as it was. InvalidRequest (400) names the failing operation,
    `operation[2] (replace)`, whether the patch is malformed or cannot be applied.
    """
    if not isinstance(patch, list):
        raise InvalidRequest(
            "a JSON Patch document must be a JSON array of operations", expression=["patch"]
        )
    result = copy.deepcopy(document)
    for index, operation in enumerate(patch):
        result = _Operation(index, operation).apply(result)
    return result


class _Operation:
    """One operation of a patch, checked when built; `apply` returns the new document."""

    def __init__(self, index: int, raw: object) -> None:
        self._where = f"operation[{index}]"
        if not isinstance(raw, dict):
            raise self._error("is not a JSON object")
        op = raw.get("op")
        if op not in _OPERATIONS:
            raise self._error("has no 'op' of add, remove, replace, move, copy or test")
        self.op: str = op
        self._where = f"operation[{index}] ({op})"
        self.path = self._pointer(raw, "path")
        self.from_: list[str] | None = None
        if op in ("move", "copy"):
            self.from_ = self._pointer(raw, "from")
        self.value: Any = _MISSING
        if op in ("add", "replace", "test"):
            if "value" not in raw:
                raise self._error("has no 'value'")
            self.value = raw["value"]

    def apply(self, document: Any) -> Any:
        if self.op == "add":
            return self._add(document, self.path, copy.deepcopy(self.value))
        if self.op == "remove":
            return self._remove(document, self.path)
        if self.op == "replace":
            self._get(document, self.path, "path")
            return self._add(self._remove(document, self.path), self.path, self.value, True)
        if self.op == "test":
            if not _equal(self._get(document, self.path, "path"), self.value):
                raise self._error("failed: the value at 'path' is not the expected one")
            return document
        assert self.from_ is not None
        value = self._get(document, self.from_, "from")
        if self.op == "copy":
            return self._add(document, self.path, copy.deepcopy(value))
        if self.path[: len(self.from_)] == self.from_ and len(self.path) > len(self.from_):
            raise self._error("cannot move a value into one of its own children")
        return self._add(self._remove(document, self.from_), self.path, value)

    def _pointer(self, raw: dict[str, Any], member: str) -> list[str]:
        text = raw.get(member)
        if not isinstance(text, str):
            raise self._error(f"has no '{member}' string")
        if text == "":
            return []
        if not text.startswith("/"):
            raise self._error(f"'{member}' is not a JSON Pointer: it must start with '/'")
        tokens = text[1:].split("/")
        for token in tokens:
            if re.search(r"~(?![01])", token):
                raise self._error(f"'{member}' has a '~' not followed by 0 or 1")
        return [token.replace("~1", "/").replace("~0", "~") for token in tokens]

    def _get(self, document: Any, pointer: list[str], member: str) -> Any:
        node = document
        for depth, token in enumerate(pointer):
            node = self._child(node, token, f"'{member}' {_render(pointer[: depth + 1])}")
        return node

    def _child(self, node: Any, token: str, what: str) -> Any:
        if isinstance(node, dict):
            if token not in node:
                raise self._error(f"{what} does not exist")
            return node[token]
        if isinstance(node, list):
            if not _INDEX.fullmatch(token) or int(token) >= len(node):
                raise self._error(f"{what} is not an index of the array")
            return node[int(token)]
        raise self._error(f"{what} does not exist: its parent is not an object or array")

    def _add(self, document: Any, pointer: list[str], value: Any, replace: bool = False) -> Any:
        if not pointer:
            return value
        parent = self._get(document, pointer[:-1], "path")
        token = pointer[-1]
        if isinstance(parent, dict):
            parent[token] = value
        elif isinstance(parent, list):
            if token == "-" and not replace:
                parent.append(value)
            elif _INDEX.fullmatch(token) and int(token) <= len(parent):
                parent.insert(int(token), value)
            else:
                raise self._error(f"'path' {_render(pointer)} is not an index of the array")
        else:
            raise self._error(f"the parent of 'path' {_render(pointer)} is not an object or array")
        return document

    def _remove(self, document: Any, pointer: list[str]) -> Any:
        if not pointer:
            return None
        parent = self._get(document, pointer[:-1], "path")
        token = pointer[-1]
        self._child(
            parent, token, f"'{'path' if pointer is self.path else 'from'}' {_render(pointer)}"
        )
        if isinstance(parent, dict):
            del parent[token]
        else:
            del parent[int(token)]
        return document

    def _error(self, reason: str) -> InvalidRequest:
        return InvalidRequest(
            f"JSON Patch {self._where} {reason}; correct the patch document",
            expression=[self._where.split(" ")[0]],
        )


def _render(pointer: list[str]) -> str:
    return "".join("/" + token.replace("~", "~0").replace("/", "~1") for token in pointer)


def _equal(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value, but never a number equal to a string or a boolean."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(
            _equal(a, b) for a, b in zip(left, right, strict=True)
        )
    return bool(left == right)
