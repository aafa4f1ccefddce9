"""Conditions of a registry mapping (`when`, `required_when`, `derive`): the engine's safe
expression language, read against the record being built.

A condition names record fields the way the registry's spec does, `Block.FIELD`
(`FirstAIDInfo.CW_COMING_WAY_CODE == '1'`), and inside a list item its siblings as `@.FIELD`
(`@.PCI == '1'`). The references are rewritten to the expression language's JSON paths
(`$.FirstAIDInfo.CW_COMING_WAY_CODE`) and read through `RecordDocument`, so no new language.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta, timezone
from typing import Any

from engine.mapping import CompileContext, Document, Scope, compile_expression
from engine.mapping.expression import is_truthy

__all__ = ["Condition", "RecordDocument", "compile_condition", "field_references", "holds"]

_LOCAL = timezone(timedelta(hours=8))
# A quoted string, or a `Block.FIELD` reference (Block starts upper case, then a dot).
_PART = re.compile(
    r"""(?P<quoted>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"|(?<![$@.\w])(?P<ref>[A-Z][A-Za-z0-9]*\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)"
)

Condition = Callable[[Mapping[str, Any], Mapping[str, Any] | None], Any]


class RecordDocument:
    """The record as a mapping `Document`: `$.Block.FIELD` from the whole record, `@.FIELD`
    from the current list item. Values are given as text, like every document's."""

    media_type = "application/json"

    def __init__(self, root: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> None:
        self.root = root
        self.current = current if current is not None else root

    def _select(self, path: str) -> list[Any]:
        if not path or path[0] not in "$@":
            return []
        node: Any = self.root if path[0] == "$" else self.current
        nodes = [node]
        for name in [p for p in path[1:].split(".") if p]:
            following: list[Any] = []
            for item in nodes:
                for each in item if isinstance(item, list) else (item,):
                    if isinstance(each, Mapping) and name in each:
                        following.append(each[name])
            nodes = following
        return nodes

    def get(self, path: str) -> str | None:
        for value in self.all(path):
            return value
        return None

    def all(self, path: str) -> list[str]:
        out: list[str] = []
        for node in self._select(path):
            for item in node if isinstance(node, list) else (node,):
                if item is None or isinstance(item, Mapping | list) or item == "":
                    continue
                out.append(str(item))
        return out

    def each(self, path: str) -> list[Document]:
        out: list[Document] = []
        for node in self._select(path):
            for item in node if isinstance(node, list) else (node,):
                if isinstance(item, Mapping):
                    out.append(RecordDocument(self.root, item))
        return out


def field_references(source: str) -> list[str]:
    """The `Block.FIELD` references of a condition, outside its quoted strings."""
    return [m["ref"] for m in _PART.finditer(source) if m["ref"]]


def _rewrite(source: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return match["quoted"] or f"$.{match['ref']}"

    return _PART.sub(replace, source)


def compile_condition(source: str, ctx: CompileContext) -> Condition:
    """Compile one condition; ConfigError (file, line, key from `ctx`) when it does not parse
    or calls an unknown function. The result, given the record (and the current list item),
    returns the expression's value; `is_truthy` decides a condition."""
    evaluate = compile_expression(_rewrite(source), ctx)

    def run(record: Mapping[str, Any], item: Mapping[str, Any] | None = None) -> Any:
        scope = Scope(RecordDocument(record, item), {}, _LOCAL, {})
        return evaluate(scope)

    return run


def holds(condition: Condition | None, record: Mapping[str, Any], item: Any = None) -> bool:
    """A missing condition holds; otherwise the condition's value decides."""
    return condition is None or is_truthy(condition(record, item))
