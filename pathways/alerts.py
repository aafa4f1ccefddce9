"""The alert runtime: keeps every open case's clocks, wakes at the next deadline, and raises and
resolves alerts as JSON messages into the outbound channel `pathway-alerts`.

The pathway engine calls `update(timeline)` after it resolves a case's nodes and `remove(case_id)`
when the case closes; `run()` does the rest. Each message carries the dedup key
`alert/<case>/<rule>/<step>/raised|resolved`, so the journal takes it once however often it is
sent: after a restart (state rebuilt from the open cases and from the keys already journalled)
and across a storm of updates, an alert is raised once and resolved once. An alert is raised
only while its clock runs (no end node yet); it is resolved when the end node arrives, when the
case stops matching the rule, when the start node is withdrawn, or when the case closes.

A deadline found long after it passed (a backlog replayed from the journal, an engine that was
down, data that arrived hours late) is *late-discovered*: older than the pathway file's
`alerts_late_after_min` when the scheduler first sees it reached. Its alert is still journalled
(the record of a missed deadline; the indicator counts it from the time nodes anyway), but with
`late_discovered: true` and severity `info` (the step's own in `severity_on_time`), and the
channel's paging destinations skip it: nobody is paged at 3 a.m. for a door-to-needle of last week.
Its resolution is flagged the same way, also after a restart (the raise in the journal says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal

from engine.connectors import Inbound, Receipt
from pathways.clock_rules import ClockRule, Step
from pathways.clocks import ClockState, evaluate, next_deadline
from pathways.timeline import CaseTimeline

__all__ = [
    "CHANNEL",
    "AcceptInto",
    "JournalledKeys",
    "LATE_SUFFIX",
    "MEDIA_TYPE",
    "AlertScheduler",
    "Resolution",
    "alert_key",
]

log = logging.getLogger(__name__)

CHANNEL = "pathway-alerts"
MEDIA_TYPE = "application/json"
MESSAGE_KIND = "pathway-alert"
LATE_SUFFIX = "late"  # alert/<key>/late: what `JournalledKeys` says of a late-discovered raise

Resolution = Literal["end_node", "not_applicable", "start_removed", "case_closed"]
AcceptInto = Callable[[str, Inbound], Awaitable[Receipt]]
OpenTimelines = Callable[[], Awaitable[Iterable[CaseTimeline]]]
# Given case ids, the alert dedup keys of those cases already in the journal, and
# `alert/<key>/late` (LATE_SUFFIX) for each open alert that was raised late-discovered.
JournalledKeys = Callable[[Collection[str]], Awaitable[set[str]]]


def alert_key(case_id: str, rule_id: str, step: str) -> str:
    """The id of one alert, `<case>/<rule>/<step>`; its messages add `/raised` or `/resolved`."""
    return f"{case_id}/{rule_id}/{step}"


class AlertScheduler:
    """Raises and resolves the alerts of the open cases' clocks, on time and once."""

    def __init__(
        self,
        rules: Mapping[str, Sequence[ClockRule]],
        accept: AcceptInto,
        *,
        open_timelines: OpenTimelines,
        timezone: tzinfo,
        journalled: JournalledKeys | None = None,
        channel: str = CHANNEL,
        now: Callable[[], datetime] | None = None,
        late_after: Mapping[str, timedelta] | None = None,
    ) -> None:
        self._rules = rules  # by center
        self._late_after = late_after or {}  # by center: older deadlines are late-discovered
        self._accept = accept
        self._open_timelines = open_timelines
        self._journalled = journalled
        self._channel = channel
        self._tz = timezone
        self._now = now or (lambda: datetime.now(timezone))
        self._timelines: dict[str, CaseTimeline] = {}
        self._deadlines: dict[str, datetime | None] = {}  # each case's next deadline
        self._dirty: set[str] = set()
        self._checking: set[str] = set()  # cases taken from `_dirty`/`_closing`, not done yet
        self._closing: dict[str, CaseTimeline | None] = {}
        self._sent: set[str] = set()  # dedup keys known to be journalled
        self._late: set[str] = set()  # alerts raised late-discovered (their resolution is too)
        self._wake = asyncio.Event()
        self.started = asyncio.Event()  # set once the state is rebuilt

    # -- what the pathway engine calls -------------------------------------------------------

    def update(self, timeline: CaseTimeline) -> None:
        """The case's nodes or facts changed: look at its clocks now. Never blocks."""
        self._timelines[timeline.case_id] = timeline
        self._closing.pop(timeline.case_id, None)
        self._dirty.add(timeline.case_id)
        self._wake.set()

    def remove(self, case_id: str) -> None:
        """The case closed: resolve its open alerts and forget it. Never blocks."""
        self._closing[case_id] = self._timelines.pop(case_id, None)
        self._deadlines.pop(case_id, None)
        self._dirty.discard(case_id)
        self._wake.set()

    @property
    def open_cases(self) -> int:
        return len(self._timelines)

    def pending(self) -> int:
        """Cases whose clocks need looking at and are not looked at yet (updated, closed, or
        with a deadline passed); 0 when all are."""
        return len(self._dirty | self._closing.keys() | self._checking | self._due(self._now()))

    def _due(self, now: datetime) -> set[str]:
        return {case for case, at in self._deadlines.items() if at is not None and at <= now}

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Rebuild from the open cases, then raise and resolve until cancelled."""
        await self._rebuild()
        self.started.set()
        while True:
            self._wake.clear()
            await self._process()
            delay = self._delay()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _rebuild(self) -> None:
        timelines = list(await self._open_timelines())
        if self._journalled is not None and timelines:
            keys = await self._journalled([t.case_id for t in timelines])
            late = {k for k in keys if k.endswith(f"/{LATE_SUFFIX}")}
            self._sent |= keys - late
            # the journal, not this process's memory, says which open alerts were late
            self._late |= {k.removeprefix("alert/").removesuffix(f"/{LATE_SUFFIX}") for k in late}
        for timeline in timelines:
            # An update that came while the store was read is newer than what was read.
            if timeline.case_id not in self._timelines and timeline.case_id not in self._closing:
                self._timelines[timeline.case_id] = timeline
                self._dirty.add(timeline.case_id)
        log.info("alerts.rebuilt", extra={"open_cases": len(self._timelines)})

    def _delay(self) -> float | None:
        ahead = [d for d in self._deadlines.values() if d is not None]
        if not ahead:
            return None
        return max(0.0, (min(ahead) - self._now()).total_seconds())

    async def _process(self) -> None:
        closing, self._closing = self._closing, {}
        work, self._dirty = self._dirty | self._due(self._now()), set()
        self._checking = closing.keys() | work
        try:
            for case_id, timeline in closing.items():
                await self._close(case_id, timeline)
                if case_id not in work:  # updated again since it closed: still to look at
                    self._checking.discard(case_id)
            for case_id in sorted(work):
                timeline = self._timelines.get(case_id)
                if timeline is not None:
                    await self._check(timeline, self._now())
                self._checking.discard(case_id)
        finally:
            self._checking = set()

    async def _check(self, timeline: CaseTimeline, now: datetime) -> None:
        states = evaluate(self._rules.get(timeline.center, ()), timeline, now)
        for state in states:
            for step in state.rule.steps:
                key = alert_key(timeline.case_id, state.rule.id, step.name)
                raised = f"alert/{key}/raised" in self._sent
                if raised and not state.is_running:
                    reason, detail = _why_stopped(state)
                    await self._resolve(timeline, state.rule, step, now, reason, detail)
            if state.status != "alerting":
                continue
            for step_state in state.reached:
                key = alert_key(timeline.case_id, state.rule.id, step_state.step.name)
                if f"alert/{key}/raised" not in self._sent:
                    await self._raise(timeline, state, step_state.step, step_state.deadline, now)
        self._deadlines[timeline.case_id] = next_deadline(states)

    async def _close(self, case_id: str, timeline: CaseTimeline | None) -> None:
        prefix = f"alert/{case_id}/"
        open_keys = sorted(
            k[len(prefix) : -len("/raised")]
            for k in self._sent
            if k.startswith(prefix) and k.endswith("/raised")
        )
        now = self._now()
        for rule_step in open_keys:
            rule_id, _, step_name = rule_step.rpartition("/")
            rule = _find(self._rules, timeline, rule_id)
            step = next((s for s in rule.steps if s.name == step_name), None) if rule else None
            if timeline is None or rule is None or step is None:
                await self._send_minimal_resolution(case_id, rule_id, step_name, now)
                continue
            await self._resolve(timeline, rule, step, now, "case_closed", "the case was closed")
        self._sent = {k for k in self._sent if not k.startswith(prefix)}

    # -- messages ----------------------------------------------------------------------------

    async def _raise(
        self,
        timeline: CaseTimeline,
        state: ClockState,
        step: Step,
        deadline: datetime,
        now: datetime,
    ) -> None:
        message = self._base("raised", timeline, state.rule, step, now)
        message["deadline"] = self._instant(deadline)
        late_after = self._late_after.get(timeline.center)
        if late_after is not None and now - deadline > late_after:
            message["late_discovered"] = True
            message["missed_by_s"] = int((now - deadline).total_seconds() // 1)
            message["step"] |= {"severity": "info", "severity_on_time": step.severity}
            self._late.add(message["alert"])
            log.warning(
                "alert.late_discovered",
                extra={"alert": message["alert"], "missed_by_s": message["missed_by_s"]},
            )
        await self._send(alert_key(timeline.case_id, state.rule.id, step.name), "raised", message)

    async def _resolve(
        self,
        timeline: CaseTimeline,
        rule: ClockRule,
        step: Step,
        now: datetime,
        reason: Resolution,
        detail: str,
    ) -> None:
        key = alert_key(timeline.case_id, rule.id, step.name)
        if f"alert/{key}/resolved" in self._sent:
            return
        message = self._base("resolved", timeline, rule, step, now)
        start = timeline.at(rule.start)
        resolution: dict[str, Any] = {"reason": reason, "detail": detail}
        if start is not None:
            deadline = start + timedelta(seconds=step.at_seconds)
            message["deadline"] = self._instant(deadline)
            ended = [(timeline.nodes[n], n) for n in rule.end if n in timeline.nodes]
            if reason == "end_node" and ended:
                ended_at, end_node = min(ended)
                resolution |= {
                    "end_node": end_node,
                    "ended_at": self._instant(ended_at),
                    "after_deadline": ended_at >= deadline,
                    "elapsed_s": int((ended_at - start).total_seconds() // 1),
                }
        message["resolution"] = resolution
        if key in self._late:  # nobody was paged for it: nobody is told it ended either
            message["late_discovered"] = True
            self._late.discard(key)
        await self._send(key, "resolved", message)

    async def _send_minimal_resolution(
        self, case_id: str, rule_id: str, step_name: str, now: datetime
    ) -> None:
        """A case closed whose rule is gone from the configuration: resolve by id alone."""
        key = alert_key(case_id, rule_id, step_name)
        message = {
            "kind": MESSAGE_KIND,
            "event": "resolved",
            "alert": key,
            "at": self._instant(now),
            "case": {"id": case_id, "reference": f"EpisodeOfCare/{case_id}"},
            "rule": {"id": rule_id},
            "step": {"name": step_name},
            "resolution": {"reason": "case_closed", "detail": "the case was closed"},
        }
        await self._send(key, "resolved", message)

    def _base(
        self, event: str, timeline: CaseTimeline, rule: ClockRule, step: Step, now: datetime
    ) -> dict[str, Any]:
        start = timeline.at(rule.start)
        return {
            "kind": MESSAGE_KIND,
            "event": event,
            "alert": alert_key(timeline.case_id, rule.id, step.name),
            "at": self._instant(now),
            "case": {
                "id": timeline.case_id,
                "reference": f"EpisodeOfCare/{timeline.case_id}",
                "center": timeline.center,
                "patient": f"Patient/{timeline.patient_id}",
                "arrival_mode": timeline.arrival_mode,
            },
            "rule": {
                "id": rule.id,
                "title": {"zh": rule.title.zh, "en": rule.title.en},
                "protects": rule.protects,
                "start": rule.start,
                "end": list(rule.end),
            },
            "step": {"name": step.name, "at_minutes": step.at_minutes, "severity": step.severity},
            "started_at": self._instant(start) if start is not None else None,
            "elapsed_s": int((now - start).total_seconds() // 1) if start is not None else None,
        }

    async def _send(self, key: str, event: str, message: dict[str, Any]) -> None:
        dedup_key = f"alert/{key}/{event}"
        receipt = await self._accept(
            self._channel,
            Inbound(
                raw=json.dumps(message, ensure_ascii=False).encode(),
                media_type=MEDIA_TYPE,
                received_at=self._now(),
                origin=f"clock://{message['rule']['id']}",
                dedup_key=dedup_key,
                correlation_id=key,
            ),
        )
        self._sent.add(dedup_key)
        log.info(
            f"alert.{event}",
            extra={"message_id": receipt.message_id, "duplicate": receipt.duplicate},
        )

    def _instant(self, value: datetime) -> str:
        return value.astimezone(self._tz).isoformat(timespec="seconds")


def _why_stopped(state: ClockState) -> tuple[Resolution, str]:
    if state.status in ("met", "resolved"):
        return "end_node", f"{state.end_node} arrived"
    if state.status == "not_applicable":
        return "not_applicable", state.reason
    return "start_removed", state.reason


def _find(
    rules: Mapping[str, Sequence[ClockRule]], timeline: CaseTimeline | None, rule_id: str
) -> ClockRule | None:
    if timeline is None:
        return None
    return next((r for r in rules.get(timeline.center, ()) if r.id == rule_id), None)
