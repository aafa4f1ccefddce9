"""Running clocks: where each clock rule stands for one case at a given instant.

Pure functions of the rules, a `CaseTimeline` and `now`: no I/O, no clock of their own, so the
scheduler, the pathway board and the tests ask the same question the same way. Instants are
aware datetimes; elapsed times are whole seconds (time-nodes.md R4).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pathways.clock_rules import ClockRule, Step
from pathways.timeline import CaseTimeline

__all__ = [
    "ONSET_NODES",
    "CaseElapsed",
    "ClockState",
    "ClockStatus",
    "StepState",
    "elapsed",
    "evaluate",
    "next_deadline",
]

# The nodes that say when the illness or injury began, in order of preference: a witnessed
# onset, else the last time seen well (wake-up stroke, time-nodes.md §4), else the injury.
ONSET_NODES = ("symptom_onset", "last_known_well", "injury")

# not_applicable: the case is outside the rule's `when`; not_started: no start node yet;
# running: started, no end node, first deadline ahead; alerting: no end node and at least one
# deadline reached; met: an end node came before the first deadline; resolved: an end node
# came at or after the first deadline (the alert was due, and the end node closes it).
ClockStatus = Literal["not_applicable", "not_started", "running", "alerting", "met", "resolved"]


@dataclass(frozen=True, slots=True)
class StepState:
    """One deadline of a clock on one case."""

    step: Step
    deadline: datetime
    # Reached: the deadline came while the clock ran (before `now`, or before the end node).
    reached: bool


@dataclass(frozen=True, slots=True)
class ClockState:
    """One rule on one case at `now`."""

    rule: ClockRule
    case_id: str
    status: ClockStatus
    now: datetime
    reason: str = ""  # why not applicable / not started
    started_at: datetime | None = None
    # running/alerting: now - start; met/resolved: end - start (negative means bad data)
    elapsed_s: int | None = None
    next_deadline: datetime | None = None  # the next deadline not reached, while it runs
    ended_at: datetime | None = None
    end_node: str | None = None
    steps: tuple[StepState, ...] = ()

    @property
    def reached(self) -> tuple[StepState, ...]:
        """The deadlines reached: alerts raised (alerting) or that were due (resolved)."""
        return tuple(s for s in self.steps if s.reached)

    @property
    def is_running(self) -> bool:
        return self.status in ("running", "alerting")


@dataclass(frozen=True, slots=True)
class CaseElapsed:
    """How long ago the case began and the patient came through the door, at `now`."""

    case_id: str
    onset_node: str | None  # which of ONSET_NODES it counts from
    since_onset_s: int | None
    onset_approximate: bool  # time-nodes.md R9: only known to a period
    since_door_s: int | None


def evaluate(rules: Iterable[ClockRule], timeline: CaseTimeline, now: datetime) -> list[ClockState]:
    """The state of every rule on the case at `now` (aware), in the rules' order."""
    _aware(now, "now")
    return [_one(rule, timeline, now) for rule in rules]


def next_deadline(states: Sequence[ClockState]) -> datetime | None:
    """The earliest deadline still ahead among running clocks; None when none runs."""
    ahead = [s.next_deadline for s in states if s.next_deadline is not None]
    return min(ahead) if ahead else None


def elapsed(
    timeline: CaseTimeline, now: datetime, *, onset_nodes: Sequence[str] = ONSET_NODES
) -> CaseElapsed:
    """Whole seconds since the onset (first of `onset_nodes` the case has) and since the door."""
    _aware(now, "now")
    onset_node = next((key for key in onset_nodes if key in timeline.nodes), None)
    door = timeline.nodes.get("door")
    return CaseElapsed(
        case_id=timeline.case_id,
        onset_node=onset_node,
        since_onset_s=_seconds(now - _node(timeline, onset_node)) if onset_node else None,
        onset_approximate=timeline.facts.get("onset_approximate") is True,
        since_door_s=_seconds(now - _aware(door, "door")) if door is not None else None,
    )


def _one(rule: ClockRule, timeline: CaseTimeline, now: datetime) -> ClockState:
    case_id = timeline.case_id
    reason = rule.failure(timeline)
    if reason is not None:
        return ClockState(rule, case_id, "not_applicable", now, reason=reason)
    start = timeline.at(rule.start)
    if start is None:
        return ClockState(rule, case_id, "not_started", now, reason=f"no {rule.start} yet")
    start = _aware(start, rule.start)
    deadlines = [(step, start + timedelta(seconds=step.at_seconds)) for step in rule.steps]
    ended = _first_end(rule, timeline)
    # A stopped clock is looked at as of its end node; a running one as of now.
    stop = ended[1] if ended is not None else now
    steps = tuple(StepState(step, deadline, deadline <= stop) for step, deadline in deadlines)
    ahead = [s.deadline for s in steps if not s.reached and ended is None]
    if ended is None:
        status: ClockStatus = "alerting" if steps[0].reached else "running"
    else:
        status = "resolved" if steps[0].reached else "met"
    return ClockState(
        rule,
        case_id,
        status,
        now,
        started_at=start,
        elapsed_s=_seconds(stop - start),
        next_deadline=ahead[0] if ahead else None,
        ended_at=ended[1] if ended is not None else None,
        end_node=ended[0] if ended is not None else None,
        steps=steps,
    )


def _first_end(rule: ClockRule, timeline: CaseTimeline) -> tuple[str, datetime] | None:
    """The earliest of the rule's end nodes the case has."""
    present = [(_node(timeline, key), key) for key in rule.end if key in timeline.nodes]
    if not present:
        return None
    at, key = min(present)
    return key, at


def _node(timeline: CaseTimeline, key: str) -> datetime:
    return _aware(timeline.nodes[key], key)


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime: clocks compare instants with an offset")
    return value


def _seconds(delta: timedelta) -> int:
    """Whole seconds, rounded toward minus infinity as a stopwatch shows them."""
    return int(delta.total_seconds() // 1)
