"""The alert scheduler on real short deadlines (a few hundred milliseconds ahead): raised at the
deadline, resolved by the end node, each exactly once across update storms and restarts.

`Journal` stands in for `SubscriberContext.accept` with the journal's contract (one message per
channel and dedup key; a resend is answered as a duplicate); the channel, the real journal and
the websocket are exercised end to end in tests/adapters/test_alert_websocket.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine.connectors import Inbound, Receipt
from engine.testing import wait_until
from pathways.alerts import CHANNEL, AlertScheduler
from pathways.clock_rules import ClockRule
from pathways.timeline import CaseTimeline
from tests.pathways.rules_text import rules_from_text

pytestmark = pytest.mark.anyio

CST = timezone(timedelta(hours=8))
AHEAD_S = 0.3  # how far ahead of now the first deadline is put
DOCS = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text("utf-8")

RULES = """\
clocks:
  - id: stroke.dnt
    title: {zh: 门-针时间, en: Door to needle}
    protects: stroke.dnt
    start: door
    end: [lytic_start]
    when:
      - {fact: ivt, in: [true]}
    steps:
      - {name: warning, at_minutes: 45, severity: warning}
      - {name: limit, at_minutes: 60, severity: critical}
"""


def _rules() -> dict[str, list[ClockRule]]:
    return {"stroke": rules_from_text(RULES)}


@dataclass
class Journal:
    """What `accept` promises: one row per (channel, dedup key); a resend is a duplicate."""

    rows: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: int = 0

    async def accept(self, channel: str, inbound: Inbound) -> Receipt:
        self.calls += 1
        assert inbound.dedup_key is not None
        assert inbound.received_at.tzinfo is not None
        key = (channel, inbound.dedup_key)
        duplicate = key in self.rows
        if not duplicate:
            self.rows[key] = json.loads(inbound.raw)
        return Receipt(message_id=list(self.rows).index(key) + 1, duplicate=duplicate)

    async def journalled(self, case_ids: Collection[str]) -> set[str]:
        return {k for _, k in self.rows if k.split("/")[1] in case_ids}

    def keys(self) -> list[str]:
        return [key for _, key in self.rows]

    def message(self, key: str) -> dict[str, Any]:
        return self.rows[(CHANNEL, key)]


def _now() -> datetime:
    return datetime.now(CST)


def _case(door: datetime, **nodes: datetime) -> CaseTimeline:
    return CaseTimeline(
        case_id="e1",
        center="stroke",
        patient_id="p1",
        arrival_mode="ems",
        nodes={"door": door, **nodes},
        facts={"ivt": True},
    )


def _door_due_in(seconds: float, minutes: int = 45) -> datetime:
    """A door instant whose `minutes` deadline is `seconds` from now."""
    return _now() - timedelta(minutes=minutes) + timedelta(seconds=seconds)


@contextlib.asynccontextmanager
async def running(
    journal: Journal,
    open_cases: Iterable[CaseTimeline] = (),
    late_after: dict[str, timedelta] | None = None,
) -> AsyncIterator[AlertScheduler]:
    cases = list(open_cases)

    async def open_timelines() -> list[CaseTimeline]:
        return cases

    scheduler = AlertScheduler(
        _rules(),
        journal.accept,
        open_timelines=open_timelines,
        journalled=journal.journalled,
        timezone=CST,
        late_after=late_after,
    )
    task = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(5):
            await scheduler.started.wait()
        yield scheduler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled()


async def _until(predicate: Any, timeout_s: float = 5) -> None:
    async def check() -> bool:
        return bool(predicate())

    await wait_until(check, timeout_s=timeout_s)


RAISED = "alert/e1/stroke.dnt/warning/raised"
RESOLVED = "alert/e1/stroke.dnt/warning/resolved"


async def test_an_alert_is_raised_at_its_deadline_and_resolved_by_the_end_node() -> None:
    journal = Journal()
    door = _door_due_in(AHEAD_S)
    async with running(journal) as scheduler:
        scheduler.update(_case(door))
        await asyncio.sleep(AHEAD_S / 3)
        before = journal.keys()
        await _until(lambda: RAISED in journal.keys())
        needle = _now()
        scheduler.update(_case(door, lytic_start=needle))
        await _until(lambda: RESOLVED in journal.keys())

    assert before == []
    raised = journal.message(RAISED)
    assert raised["event"] == "raised"
    assert raised["alert"] == "e1/stroke.dnt/warning"
    assert raised["case"] == {
        "id": "e1",
        "reference": "EpisodeOfCare/e1",
        "center": "stroke",
        "patient": "Patient/p1",
        "arrival_mode": "ems",
    }
    assert raised["rule"]["title"] == {"zh": "门-针时间", "en": "Door to needle"}
    assert raised["step"] == {"name": "warning", "at_minutes": 45, "severity": "warning"}
    deadline = datetime.fromisoformat(raised["deadline"])
    assert deadline == (door + timedelta(minutes=45)).replace(microsecond=0)
    assert raised["deadline"].endswith("+08:00")
    assert datetime.fromisoformat(raised["at"]) >= deadline
    resolution = journal.message(RESOLVED)["resolution"]
    assert resolution["reason"] == "end_node"
    assert resolution["end_node"] == "lytic_start"
    assert resolution["after_deadline"] is True
    assert journal.keys() == [RAISED, RESOLVED]


@dataclass
class HeldJournal(Journal):
    """A journal whose commits wait until `release` is set, as a busy database's do."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def accept(self, channel: str, inbound: Inbound) -> Receipt:
        await self.release.wait()
        return await super().accept(channel, inbound)


async def test_pending_counts_an_updated_case_until_its_alerts_are_journalled() -> None:
    journal = HeldJournal()
    async with running(journal) as scheduler:
        assert scheduler.pending() == 0
        scheduler.update(_case(_door_due_in(-5)))
        assert scheduler.pending() == 1  # at once: a caller may ask before the loop runs
        await asyncio.sleep(0.2)
        assert journal.keys() == []
        assert scheduler.pending() == 1  # being looked at, its alert not journalled yet
        journal.release.set()
        await _until(lambda: scheduler.pending() == 0)
        assert journal.keys() == [RAISED]
        scheduler.remove("e1")
        assert scheduler.pending() == 1  # its open alert is still to be resolved
        await _until(lambda: scheduler.pending() == 0)
        assert journal.keys() == [RAISED, RESOLVED]


async def test_an_end_node_before_the_deadline_raises_nothing() -> None:
    journal = Journal()
    door = _door_due_in(AHEAD_S)
    async with running(journal) as scheduler:
        scheduler.update(_case(door))
        scheduler.update(_case(door, lytic_start=_now()))
        await asyncio.sleep(AHEAD_S * 3)

    assert journal.keys() == []


async def test_an_update_storm_raises_and_resolves_once() -> None:
    journal = Journal()
    door = _door_due_in(AHEAD_S)
    async with running(journal) as scheduler:
        for _ in range(300):  # across the deadline
            scheduler.update(_case(door))
            await asyncio.sleep(0.002)
        await _until(lambda: RAISED in journal.keys())
        needle = _now()
        for _ in range(300):
            scheduler.update(_case(door, lytic_start=needle))
            await asyncio.sleep(0)
        await _until(lambda: RESOLVED in journal.keys())
        await asyncio.sleep(0.2)

    assert journal.keys() == [RAISED, RESOLVED]
    assert journal.calls == 2  # not even offered twice


async def test_escalation_steps_are_raised_in_turn_and_all_resolved() -> None:
    journal = Journal()
    door = _door_due_in(AHEAD_S, minutes=60)  # the limit step is due in 0.3 s
    async with running(journal) as scheduler:
        scheduler.update(_case(door))
        await _until(lambda: len(journal.keys()) == 2)
        scheduler.update(_case(door, lytic_start=_now()))
        await _until(lambda: len(journal.keys()) == 4)

    assert journal.keys() == [
        "alert/e1/stroke.dnt/warning/raised",
        "alert/e1/stroke.dnt/limit/raised",
        "alert/e1/stroke.dnt/warning/resolved",
        "alert/e1/stroke.dnt/limit/resolved",
    ]
    assert journal.message("alert/e1/stroke.dnt/limit/raised")["step"]["severity"] == "critical"


async def test_a_deadline_passed_while_down_is_raised_at_start_and_never_twice() -> None:
    journal = Journal()
    door = _now() - timedelta(minutes=50)  # warning due 5 minutes ago, limit in 10 minutes
    async with running(journal, [_case(door)]):
        await _until(lambda: RAISED in journal.keys())
    async with running(journal, [_case(door)]) as scheduler:
        await asyncio.sleep(0.3)
        calls_after_restart = journal.calls
        scheduler.update(_case(door, lytic_start=_now()))
        await _until(lambda: RESOLVED in journal.keys())
    async with running(journal, [_case(door, lytic_start=_now())]):
        await asyncio.sleep(0.3)

    assert calls_after_restart == 1  # the restarted scheduler knew it from the journal
    assert journal.keys() == [RAISED, RESOLVED]
    assert journal.calls == 2


async def test_without_the_journal_lookup_a_restart_resend_is_absorbed_as_a_duplicate() -> None:
    journal = Journal()
    door = _now() - timedelta(minutes=50)
    for _ in range(2):
        scheduler = AlertScheduler(
            _rules(), journal.accept, open_timelines=_returning([_case(door)]), timezone=CST
        )
        task = asyncio.create_task(scheduler.run())
        await _until(lambda: journal.calls >= 1)
        await asyncio.sleep(0.1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert journal.keys() == [RAISED]


def _returning(cases: list[CaseTimeline]) -> Any:
    async def open_timelines() -> list[CaseTimeline]:
        return cases

    return open_timelines


async def test_a_case_leaving_the_rule_resolves_its_alert_saying_why() -> None:
    journal = Journal()
    door = _now() - timedelta(minutes=46)
    async with running(journal, [_case(door)]) as scheduler:
        await _until(lambda: RAISED in journal.keys())
        scheduler.update(replace(_case(door), facts={"ivt": False, "evt": True}))
        await _until(lambda: RESOLVED in journal.keys())

    assert journal.message(RESOLVED)["resolution"] == {
        "reason": "not_applicable",
        "detail": "fact ivt is False",
    }


async def test_closing_a_case_resolves_its_open_alerts() -> None:
    journal = Journal()
    door = _now() - timedelta(minutes=46)
    async with running(journal, [_case(door)]) as scheduler:
        await _until(lambda: RAISED in journal.keys())
        scheduler.remove("e1")
        await _until(lambda: RESOLVED in journal.keys())
        assert scheduler.open_cases == 0

    assert journal.message(RESOLVED)["resolution"]["reason"] == "case_closed"


async def test_an_update_during_start_is_not_overwritten_by_the_older_store_read() -> None:
    journal = Journal()
    door = _now() - timedelta(minutes=46)
    stale = _case(door)
    fresh = _case(door, lytic_start=door + timedelta(minutes=10))
    store_read = asyncio.Event()

    async def slow_open_timelines() -> list[CaseTimeline]:
        await store_read.wait()
        return [stale]

    scheduler = AlertScheduler(
        _rules(), journal.accept, open_timelines=slow_open_timelines, timezone=CST
    )
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.05)
    scheduler.update(fresh)  # the pathway engine resolved the needle meanwhile
    store_read.set()
    await scheduler.started.wait()
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    assert journal.keys() == []


async def test_the_message_example_of_the_docs_has_the_fields_of_a_raised_alert() -> None:
    example = json.loads(DOCS.split("```json\n")[1].split("```")[0])
    journal = Journal()
    async with running(journal, [_case(_now() - timedelta(minutes=46))]):
        await _until(lambda: RAISED in journal.keys())
    raised = journal.message(RAISED)

    assert example.keys() == raised.keys()
    for part in ("case", "rule", "step"):
        assert example[part].keys() == raised[part].keys()


async def test_a_deadline_long_past_when_found_is_journalled_late_and_pages_nobody() -> None:
    """A backlog replayed from the journal: a door three days ago without a needle. Both steps
    are recorded as missed (journalled), flagged late-discovered at severity info; a case whose
    warning passed five minutes ago (within the 30 minutes) is paged as usual."""
    journal = Journal()
    old = replace(_case(_now() - timedelta(days=3)), case_id="old")
    recent = replace(_case(_now() - timedelta(minutes=50)), case_id="recent")
    async with running(journal, [old, recent], late_after={"stroke": timedelta(minutes=30)}):
        await _until(lambda: len(journal.rows) == 3)
    assert sorted(journal.keys()) == [
        "alert/old/stroke.dnt/limit/raised",
        "alert/old/stroke.dnt/warning/raised",
        "alert/recent/stroke.dnt/warning/raised",
    ]
    for step, on_time in (("warning", "warning"), ("limit", "critical")):
        late = journal.message(f"alert/old/stroke.dnt/{step}/raised")
        assert late["late_discovered"] is True
        assert late["step"]["severity"] == "info" and late["step"]["severity_on_time"] == on_time
        assert late["missed_by_s"] >= 3 * 24 * 3600 - (45 if step == "warning" else 60) * 60 - 5
    paged = journal.message("alert/recent/stroke.dnt/warning/raised")
    assert "late_discovered" not in paged and paged["step"]["severity"] == "warning"


async def test_without_a_threshold_every_reached_deadline_is_paged() -> None:
    journal = Journal()
    async with running(journal, [_case(_now() - timedelta(days=3))]):
        await _until(lambda: len(journal.rows) == 2)
    assert all("late_discovered" not in journal.message(k) for k in journal.keys())
