"""The small condition language of indicator populations, numerators and exclusions.

A condition is data in `config/pathways/` (see docs/quality-indicators.md) compiled into the
classes here, and evaluated against one `CaseTimeline` with three-valued logic: true, false, or
unknown because a time node it needs is missing (an `interval` test without its nodes). Unknown
carries the missing node keys, so a population that cannot be decided makes the case
`not_computable` naming them, never silently out of the indicator.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pathways.timeline import CaseTimeline, FactValue

__all__ = [
    "COMPARISONS",
    "AllOf",
    "AnyOf",
    "Chosen",
    "Comparison",
    "Condition",
    "FactCompare",
    "FactIn",
    "HasFact",
    "HasNode",
    "IntervalWithin",
    "Limit",
    "NodeChoice",
    "Not",
    "Verdict",
    "fact_of",
    "whole_seconds",
]

Comparison = Literal["<", "<=", ">", ">=", "==", "!="]
COMPARISONS: Mapping[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_SYMBOLS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥", "==": "=", "!=": "≠"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """True, False, or None (unknown: the nodes in `missing` are needed to decide)."""

    value: bool | None
    missing: tuple[str, ...] = ()


TRUE = Verdict(True)
FALSE = Verdict(False)


class Condition(Protocol):
    """Anything that decides for one case."""

    def evaluate(self, case: CaseTimeline) -> Verdict: ...


def fact_of(case: CaseTimeline, name: str) -> FactValue | None:
    """A fact's value, or None when the case does not record it. `arrival_mode` is the
    EpisodeOfCare's arrival mode, every other name a case fact."""
    if name == "arrival_mode":
        return case.arrival_mode
    return case.facts.get(name)


@dataclass(frozen=True, slots=True)
class Limit:
    """A bound on a number of seconds: `op` and `seconds` (≤ 90 min is ("<=", 5400))."""

    op: Comparison
    seconds: int
    confirmed: bool = True

    def holds(self, seconds: int) -> bool:
        return COMPARISONS[self.op](seconds, self.seconds)

    def describe(self) -> str:
        """`≤ 90 min`, `< 2 h`, `≤ 90.5 min`: for reports and chart labels."""
        if self.seconds % 3600 == 0 and self.seconds >= 7200:
            amount = f"{self.seconds // 3600} h"
        elif self.seconds % 60 == 0:
            amount = f"{self.seconds // 60} min"
        else:
            amount = f"{self.seconds / 60:g} min"
        return f"{_SYMBOLS[self.op]} {amount}"


@dataclass(frozen=True, slots=True)
class Chosen:
    """The node an interval end resolved to, and its instant."""

    key: str
    instant: datetime


@dataclass(frozen=True, slots=True)
class NodeChoice:
    """Which instant an interval starts or ends at: one node, or a choice among several.

    `node`: that node. `earliest_of`: the earliest of those present. `later_of`: the latest,
    all of them needed. `first_present`: the first in list order that is present.
    """

    rule: Literal["node", "earliest_of", "later_of", "first_present"]
    nodes: tuple[str, ...]

    def resolve(self, nodes: Mapping[str, datetime]) -> Chosen | tuple[str, ...]:
        """The chosen node and its instant, or the keys missing to choose one."""
        present = [Chosen(key, nodes[key]) for key in self.nodes if key in nodes]
        if self.rule == "later_of":
            missing = tuple(key for key in self.nodes if key not in nodes)
            return missing if missing else max(present, key=lambda chosen: chosen.instant)
        if not present:
            return self.nodes
        if self.rule == "earliest_of":
            return min(present, key=lambda chosen: chosen.instant)
        return present[0]  # node, first_present

    def describe(self) -> str:
        if self.rule == "node":
            return self.nodes[0]
        return f"{self.rule}({', '.join(self.nodes)})"


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]

    def evaluate(self, case: CaseTimeline) -> Verdict:
        missing: list[str] = []
        for item in self.items:
            verdict = item.evaluate(case)
            if verdict.value is False:
                return FALSE
            missing += verdict.missing
        return Verdict(None, _unique(missing)) if missing else TRUE


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]

    def evaluate(self, case: CaseTimeline) -> Verdict:
        missing: list[str] = []
        for item in self.items:
            verdict = item.evaluate(case)
            if verdict.value is True:
                return TRUE
            missing += verdict.missing
        return Verdict(None, _unique(missing)) if missing else FALSE


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def evaluate(self, case: CaseTimeline) -> Verdict:
        verdict = self.item.evaluate(case)
        return verdict if verdict.value is None else Verdict(not verdict.value)


@dataclass(frozen=True, slots=True)
class FactIn:
    """The fact is recorded and equals one of `values`."""

    name: str
    values: tuple[FactValue, ...]

    def evaluate(self, case: CaseTimeline) -> Verdict:
        value = fact_of(case, self.name)
        # bool is an int in Python: True must not match a fact value of 1
        found = any(type(value) is type(v) and value == v for v in self.values)
        return Verdict(value is not None and found)


@dataclass(frozen=True, slots=True)
class FactCompare:
    """A numeric fact compared with a number (`iss: {">=": 16}`); false when not recorded."""

    name: str
    op: Comparison
    value: int | float

    def evaluate(self, case: CaseTimeline) -> Verdict:
        value = fact_of(case, self.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return FALSE
        return Verdict(COMPARISONS[self.op](value, self.value))


@dataclass(frozen=True, slots=True)
class HasNode:
    """Every one of these time nodes is present."""

    keys: tuple[str, ...]

    def evaluate(self, case: CaseTimeline) -> Verdict:
        return Verdict(all(key in case.nodes for key in self.keys))


@dataclass(frozen=True, slots=True)
class HasFact:
    """Every one of these facts is recorded."""

    names: tuple[str, ...]

    def evaluate(self, case: CaseTimeline) -> Verdict:
        return Verdict(all(fact_of(case, name) is not None for name in self.names))


@dataclass(frozen=True, slots=True)
class IntervalWithin:
    """The interval start → end satisfies `limit`; unknown when a node is missing."""

    start: NodeChoice
    end: NodeChoice
    limit: Limit

    def evaluate(self, case: CaseTimeline) -> Verdict:
        start = self.start.resolve(case.nodes)
        end = self.end.resolve(case.nodes)
        if not isinstance(start, Chosen) or not isinstance(end, Chosen):
            missing = (start if isinstance(start, tuple) else ()) + (
                end if isinstance(end, tuple) else ()
            )
            return Verdict(None, _unique(missing))
        seconds = whole_seconds(start.instant, end.instant)
        return Verdict(seconds >= 0 and self.limit.holds(seconds))


def whole_seconds(start: datetime, end: datetime) -> int:
    """end − start in whole seconds (R4); instants carry seconds, so nothing is rounded away
    except sub-second digits, which are truncated toward zero."""
    return int((end - start).total_seconds())


def _unique(keys: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(keys))
