"""Merge mode: the elements of a stored resource that another writer owns, kept when a mapping
rewrites the resource (a mapping's `merge: {keep: [...]}`, docs/mapping-language.md).

A keep rule is `element` (all of it) or `element.where(<FHIRPath on one item>)` (the items of a
repeating element that satisfy the condition). `merge_kept(current, new, rules)` is the new
resource plus what the rules select of the current one: kept items follow the new resource's own
items, in the current resource's order, and an item the new resource already has is not added
twice, so applying it again to its own output changes nothing (replays converge).

The rules travel with the mapping's output, in the Bundle entry's `request.extension` (url
`MERGE_KEEP_EXTENSION`, one `valueString` per rule), for the destination that writes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from engine.errors import ConfigError
from engine.mapping.fhirpath import compile_path

__all__ = ["MERGE_KEEP_EXTENSION", "KeepRule", "keep_rules_of", "merge_kept", "parse_keep"]

MERGE_KEEP_EXTENSION = "https://greenchannel.example.org/fhir/StructureDefinition/merge-keep"
_RULE = re.compile(r"([a-z][A-Za-z0-9]*)(?:\.where\((.+)\))?", re.DOTALL)


@dataclass(frozen=True)
class KeepRule:
    """One compiled keep rule."""

    text: str
    element: str
    _condition: Callable[[Any], list[Any]] | None

    def selects(self, item: Any) -> bool:
        if self._condition is None:
            return True
        try:
            result = self._condition(item)
        except Exception:  # fhirpathpy raises plain Exceptions: an item it cannot read is not kept
            return False
        return result == [True]


@lru_cache(maxsize=256)
def parse_keep(text: str, *, where: str = "") -> KeepRule:
    """Compile `element` or `element.where(condition)`; ConfigError naming `where` if not."""
    match = _RULE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(
            f"keep rule {text!r} must be an element name such as `episodeOfCare`, or "
            "`element.where(<FHIRPath condition on one item>)`",
            key=where or None,
        )
    element, condition = match.group(1), match.group(2)
    compiled = compile_path(condition, where=where) if condition is not None else None
    return KeepRule(text.strip(), element, compiled)


def keep_rules_of(request: Mapping[str, Any]) -> tuple[KeepRule, ...]:
    """The keep rules a Bundle entry's `request` carries (none when it is a plain write)."""
    rules = [
        extension.get("valueString")
        for extension in request.get("extension") or []
        if isinstance(extension, Mapping) and extension.get("url") == MERGE_KEEP_EXTENSION
    ]
    return tuple(parse_keep(str(rule), where="request.extension") for rule in rules)


def merge_kept(
    current: Mapping[str, Any], new: Mapping[str, Any], rules: Sequence[KeepRule]
) -> dict[str, Any]:
    """`new` plus the elements of `current` the rules keep (neither argument is changed).

    A repeating element gets the selected current items the new one lacks, appended; a single
    element is taken from `current` only when `new` does not have it (the mapping's value wins).
    """
    merged = dict(new)
    for rule in rules:
        held = current.get(rule.element)
        if held is None:
            continue
        if isinstance(held, list):
            mine = merged.get(rule.element)
            items = list(mine) if isinstance(mine, list) else ([] if mine is None else [mine])
            for item in held:
                if rule.selects(item) and item not in items:
                    items.append(item)
            if items:
                merged[rule.element] = items
        elif rule.element not in merged and rule.selects(held):
            merged[rule.element] = held
    return merged
