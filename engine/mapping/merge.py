"""Merge mode: the elements of a stored resource that another writer owns, kept when a mapping
rewrites the resource (a mapping's `merge: {keep: [...]}`, docs/mapping-language.md).

A keep rule is `element` (all of it) or `element.where(<FHIRPath on one item>)` (the items of a
repeating element that satisfy the condition). `merge_kept(current, new, rules)` is the new
resource plus what the rules select of the current one: kept items follow the new resource's own
items, in the current resource's order, and an item the new resource already has is not added
twice, so applying it again to its own output changes nothing (replays converge).

A hold rule (`merge: {hold: [...]}`, sent as `hold <rule>`) is stronger: the current element
replaces the mapping's own value when its condition holds. Its condition reads the current
element as `$this` and the mapping's new resource as `%new`, so another writer's decision (the
pathway engine finished the case) stands against a message that only restates an older state
(`status.where($this = 'finished' and %new.status = 'active')`).

A history rule (`merge: {history: ["location by location.reference"]}`, sent as `history
<rule> by <key>`) folds the message's stays into the stored ones instead of replacing them
(engine.mapping.history): the HIS's location history survives its messages naming only the
last two wards.

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
from engine.mapping.history import merge_history

__all__ = [
    "HISTORY",
    "HOLD",
    "MERGE_KEEP_EXTENSION",
    "KeepRule",
    "keep_rules_of",
    "merge_kept",
    "parse_keep",
]

MERGE_KEEP_EXTENSION = "https://greenchannel.example.org/fhir/StructureDefinition/merge-keep"
_RULE = re.compile(r"([a-z][A-Za-z0-9]*)(?:\.where\((.+)\))?", re.DOTALL)
HOLD = "hold "  # the prefix of a hold rule's text
HISTORY = "history "  # the prefix of a history rule's text, which ends with ` by <key path>`
_BY = " by "


@dataclass(frozen=True)
class KeepRule:
    """One compiled keep rule."""

    text: str
    element: str
    _condition: Callable[..., list[Any]] | None
    holds: bool = False  # the current element wins over the mapping's when selected
    key: Callable[..., list[Any]] | None = None  # a history rule's stay identity

    def selects(self, item: Any, new: Mapping[str, Any] | None = None) -> bool:
        if self._condition is None:
            return True
        try:
            result = self._condition(item, {"new": dict(new)} if new is not None else None)
        except Exception:  # fhirpathpy raises plain Exceptions: an item it cannot read is not kept
            return False
        return result == [True]


@lru_cache(maxsize=256)
def parse_keep(text: str, *, where: str = "") -> KeepRule:
    """Compile `element` or `element.where(condition)` (a hold rule: `hold element...`, a
    history rule: `history element... by <key FHIRPath>`); ConfigError naming `where` if not."""
    body = text.strip() if isinstance(text, str) else ""
    holds = body.startswith(HOLD)
    body = body.removeprefix(HOLD)
    key = None
    if body.startswith(HISTORY):
        body, by, key_path = body.removeprefix(HISTORY).rpartition(_BY)
        if not by or not key_path.strip():
            raise ConfigError(
                f"history rule {text!r} must say what identifies a stay: "
                "`location by location.reference`",
                key=where or None,
            )
        key = compile_path(key_path, where=where)
    match = _RULE.fullmatch(body.strip())
    if match is None:
        raise ConfigError(
            f"keep rule {text!r} must be an element name such as `episodeOfCare`, or "
            "`element.where(<FHIRPath condition on one item>)`",
            key=where or None,
        )
    element, condition = match.group(1), match.group(2)
    compiled = compile_path(condition, where=where) if condition is not None else None
    return KeepRule(text.strip(), element, compiled, holds, key)


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
    element is taken from `current` only when `new` does not have it (the mapping's value wins),
    or, for a hold rule, whenever its condition holds (the current value wins).
    """
    merged = dict(new)
    for rule in sorted(rules, key=lambda r: r.key is None):  # histories first: keeps append
        held = current.get(rule.element)
        if held is None:
            continue
        if rule.key is not None:
            merged[rule.element] = _history(rule, held, new.get(rule.element))
        elif rule.holds:
            if rule.selects(held, new):
                merged[rule.element] = held
        elif isinstance(held, list):
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


def _history(rule: KeepRule, stored: Any, new: Any) -> list[Any]:
    """The stored stays the rule selects with the message's folded in (engine.mapping.history).
    Stored items it does not select are left to the keep rules."""
    key = rule.key
    assert key is not None

    def identity(item: Any) -> Any:
        try:
            found = key(item)
        except Exception:  # fhirpathpy raises plain Exceptions: no identity, a stay of its own
            return None
        return found[0] if len(found) == 1 else None

    mine = stored if isinstance(stored, list) else [stored]
    theirs = new if isinstance(new, list) else ([] if new is None else [new])
    return merge_history([i for i in mine if rule.selects(i)], theirs, identity)
