"""Clock rules: the `clocks:` list of a center's pathway file, validated into `ClockRule`s.

A clock runs from a start node (or the case's `activation`) until one of its end nodes arrives,
for the cases its `when` conditions select, and raises an alert at each step's deadline (the
first warns before the indicator's threshold, later ones escalate). Problems name file, line
and key, e.g. `config/pathways/stroke.yaml:12 clocks[0].steps[1].at_minutes: must be > 0`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.errors import ConfigError
from engine.mapping import PositionMap, format_key, validation_error_to_config_error
from pathways.timeline import ACTIVATION, CaseTimeline
from pathways.vocabulary import ArrivalMode

__all__ = [
    "ACTIVATION",
    "ClockRule",
    "Condition",
    "ModeTest",
    "Severity",
    "Step",
    "Title",
    "parse_clock_rules",
]

MAX_MINUTES = 7 * 24 * 60  # a week: a clock longer than that is a typo, not a deadline
KEY = r"^[a-z][a-z0-9_]{0,63}$"
HINT = "fix the clock rules of the pathway file; the engine starts once they are valid"

Severity = Literal["info", "warning", "critical"]
FactScalar = str | bool | int | float


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Title(_Frozen):
    """What the alert is called on the board, in both languages."""

    zh: str = Field(min_length=1, max_length=100, description="中文 name shown to the team.")
    en: str = Field(min_length=1, max_length=100, description="English name.")


class Step(_Frozen):
    """One deadline of a clock: at `at_minutes` after the start, raise with `severity`."""

    name: str = Field(pattern=KEY, description="Unique in the rule; part of the alert's id.")
    at_minutes: float = Field(gt=0, le=MAX_MINUTES, description="Minutes after the start node.")
    severity: Severity = Field(description="info, warning or critical.")

    @property
    def at_seconds(self) -> int:
        return round(self.at_minutes * 60)

    @model_validator(mode="after")
    def _whole_seconds(self) -> Step:
        if abs(self.at_minutes * 60 - round(self.at_minutes * 60)) > 1e-9:
            raise ValueError("at_minutes must be a whole number of seconds (e.g. 7.5)")
        return self


class ModeTest(_Frozen):
    """Arrival modes a case must (`in`) or must not (`not_in`) have."""

    in_: tuple[ArrivalMode, ...] | None = Field(None, alias="in", min_length=1)
    not_in: tuple[ArrivalMode, ...] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_test(self) -> ModeTest:
        if (self.in_ is None) == (self.not_in is None):
            raise ValueError("give exactly one of `in` or `not_in`")
        return self

    def holds(self, mode: ArrivalMode | None) -> bool:
        """An unknown arrival mode is in no list: `in` fails, `not_in` holds."""
        if self.in_ is not None:
            return mode in self.in_
        return mode not in (self.not_in or ())


class Condition(_Frozen):
    """One test on the case: a fact (`in`, `not_in`, `present`), the arrival mode, or `any`."""

    fact: str | None = Field(None, pattern=KEY, description="A case fact name (diagnosis ...).")
    in_: tuple[FactScalar, ...] | None = Field(None, alias="in", min_length=1)
    not_in: tuple[FactScalar, ...] | None = Field(None, min_length=1)
    present: bool | None = None
    arrival_mode: ModeTest | None = None
    any: tuple[Condition, ...] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Condition:
        kinds = [k for k in ("fact", "arrival_mode", "any") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a condition has exactly one of `fact`, `arrival_mode` or `any`")
        tests = [t for t in ("in_", "not_in", "present") if getattr(self, t) is not None]
        if self.fact is not None and len(tests) != 1:
            raise ValueError(f"fact {self.fact}: give exactly one of `in`, `not_in` or `present`")
        if self.fact is None and tests:
            raise ValueError("`in`, `not_in` and `present` go with `fact`")
        return self

    def failure(self, timeline: CaseTimeline) -> str | None:
        """Why the case does not meet this condition, or None when it does."""
        if self.arrival_mode is not None:
            if self.arrival_mode.holds(timeline.arrival_mode):
                return None
            return f"arrival mode is {timeline.arrival_mode or 'unknown'}"
        if self.any is not None:
            reasons = [c.failure(timeline) for c in self.any]
            if any(r is None for r in reasons):
                return None
            return " and ".join(r for r in reasons if r)
        assert self.fact is not None
        value = timeline.facts.get(self.fact)
        if self.present is not None:
            if (value is not None) == self.present:
                return None
            return f"fact {self.fact} is {'missing' if value is None else 'present'}"
        if self.in_ is not None:
            if value is not None and value in self.in_:
                return None
        elif value is None or value not in (self.not_in or ()):
            return None
        return f"fact {self.fact} is {'missing' if value is None else value}"


class ClockRule(_Frozen):
    """A running clock: from `start` until one of `end`, for the cases `when` selects."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_.-]{0,63}$", description="Stable id of the rule.")
    title: Title
    protects: str | None = Field(None, description="The indicator id this clock warns for.")
    start: str = Field(pattern=KEY, description="Time node (or `activation`) that starts it.")
    end: tuple[str, ...] = Field(min_length=1, description="Time nodes any of which stop it.")
    when: tuple[Condition, ...] = Field((), description="All must hold for the clock to apply.")
    steps: tuple[Step, ...] = Field(min_length=1, description="Deadlines, earliest first.")
    confirmed: bool = Field(False, description="Values confirmed by the center's committee.")
    note: str = Field("", description="Where the values come from.")

    @model_validator(mode="after")
    def _consistent(self) -> ClockRule:
        for node in self.end:
            if not _is_key(node):
                raise ValueError(f"end node {node!r} is not a node key (snake_case)")
        if self.start in self.end:
            raise ValueError(f"{self.start} is both the start and an end node")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError(f"step names must be unique: {', '.join(names)}")
        seconds = [s.at_seconds for s in self.steps]
        if seconds != sorted(set(seconds)):
            raise ValueError("steps must have increasing at_minutes (alert first, then escalate)")
        return self

    def failure(self, timeline: CaseTimeline) -> str | None:
        """Why this clock does not apply to the case, or None when it does."""
        for condition in self.when:
            reason = condition.failure(timeline)
            if reason is not None:
                return reason
        return None


class _ClockList(_Frozen):
    clocks: tuple[ClockRule, ...]


def parse_clock_rules(
    raw: Any,
    *,
    source: str,
    positions: PositionMap | None = None,
    node_keys: Collection[str] | None = None,
) -> list[ClockRule]:
    """Validate the `clocks:` list `raw` of the file `source` (as `load_yaml` read it, with the
    file's `positions`; the list sits under the top-level key `clocks`). With `node_keys`,
    every start and end must be one of them (or `activation` for a start). Raises ConfigError
    naming file, line and key."""
    key = "clocks"
    lines = positions or {}
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(
            "must be a list of clock rules",
            file=source,
            line=lines.get((key,)),
            key=key,
            hint=HINT,
        )
    try:
        parsed = _ClockList.model_validate({key: raw})
    except ValidationError as error:
        problem = validation_error_to_config_error(error, source, {key: raw}, lines)
        problem.hint = HINT
        raise problem from error
    rules = list(parsed.clocks)
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        where = (key, index)
        if rule.id in seen:
            raise _at(
                f"id {rule.id!r} is also used by {key}[{seen[rule.id]}]",
                source,
                lines,
                (*where, "id"),
            )
        seen[rule.id] = index
        if node_keys is not None:
            if rule.start != ACTIVATION and rule.start not in node_keys:
                raise _at(_unknown(rule.start, node_keys), source, lines, (*where, "start"))
            for position, node in enumerate(rule.end):
                if node not in node_keys:
                    raise _at(_unknown(node, node_keys), source, lines, (*where, "end", position))
    return rules


def _at(
    message: str, source: str, positions: PositionMap, path: Sequence[str | int]
) -> ConfigError:
    line = None
    for end in range(len(path), -1, -1):
        line = positions.get(tuple(path[:end]))
        if line is not None:
            break
    return ConfigError(message, file=source, line=line, key=format_key(path), hint=HINT)


def _unknown(node: str, node_keys: Collection[str]) -> str:
    return (
        f"{node!r} is not a time node of this pathway (known: {', '.join(sorted(node_keys)[:60])})"
    )


def _is_key(value: str) -> bool:
    return value.replace("_", "").isalnum() and value[:1].isalpha() and value == value.lower()
