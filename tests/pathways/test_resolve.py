"""Resolving one authoritative time from a node's candidates with the shipped chest pain rules:
source priority (R6), the review tolerance, the first instant (R7) and the door by arrival mode
(R1)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pathways.definitions import NodeDefinition, Pathways
from pathways.resolve import Candidate, resolve

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 25, 8, 20, tzinfo=CST)


def candidate(
    cid: str, minutes: float, source: str, priority: int, rule: str | None, *, proxy: bool = False,
    written: int = 0,
) -> Candidate:  # fmt: skip
    return Candidate(
        id=cid, node="door", instant=T0 + timedelta(minutes=minutes), source=source,
        priority=priority, rule=rule, proxy=proxy, written=T0 + timedelta(seconds=written),
    )  # fmt: skip


@pytest.fixture
def door(pathways: Pathways) -> NodeDefinition:
    return pathways.by_center["chest_pain"].nodes["door"]


UWB = ("uwb", 100, "door/uwb_gate")
HIS = ("hl7v2", 40, "door/his_registration")
AMBULANCE = ("dispatch", 70, "door/ambulance_arrival")


def test_a_uwb_gate_event_outranks_the_his_registration_and_a_typed_time(
    door: NodeDefinition,
) -> None:
    pool = [
        candidate("his", 2, *HIS, proxy=True),
        candidate("uwb", 1, *UWB),
        candidate("typed", 0, "manual", 10, None),
    ]
    resolution = resolve(door, pool, arrival_mode="self", after=None)
    assert resolution is not None
    assert resolution.instant == T0 + timedelta(minutes=1)
    assert [w.id for w in resolution.winners] == ["uwb"]
    assert resolution.rule == "priority-first"
    assert not resolution.proxy and resolution.conflicts == ()


def test_candidates_further_apart_than_five_minutes_are_a_conflict(door: NodeDefinition) -> None:
    pool = [candidate("uwb", 0, *UWB), candidate("his", 5, *HIS), candidate("late", 5.5, *HIS[:2],
            "door/other")]  # fmt: skip
    resolution = resolve(door, pool, arrival_mode=None, after=None)
    assert resolution is not None
    assert [c.id for c in resolution.conflicts] == ["late"]  # 5 min 0 s is within tolerance


def test_only_a_proxy_gives_a_flagged_door(door: NodeDefinition) -> None:
    resolution = resolve(
        door, [candidate("his", 0, *HIS, proxy=True)], arrival_mode=None, after=None
    )
    assert resolution is not None and resolution.proxy


def test_the_first_instant_wins_and_repeats_of_one_source_are_no_conflict(
    pathways: Pathways,
) -> None:
    draw = pathways.by_center["chest_pain"].nodes["troponin_draw"]
    rule = ("hl7v2", 60, "troponin_draw/lis_specimen_collected")
    pool = [candidate("second", 180, *rule), candidate("first", 0, *rule)]
    resolution = resolve(draw, pool, arrival_mode=None, after=None)
    assert resolution is not None
    assert [w.id for w in resolution.winners] == ["first"]
    assert resolution.conflicts == ()


def test_first_means_first_at_or_after_the_start_node(pathways: Pathways) -> None:
    first_ecg = pathways.by_center["chest_pain"].nodes["first_ecg"]
    rule = ("hl7v2", 60, "first_ecg/ecg_acquired")
    pool = [candidate("old", -30, *rule), candidate("at", 0, *rule), candidate("later", 10, *rule)]
    resolution = resolve(first_ecg, pool, arrival_mode="ems", after=T0)
    assert resolution is not None and [w.id for w in resolution.winners] == ["at"]
    assert resolve(first_ecg, pool[:1], arrival_mode="ems", after=T0) is None


def test_an_angiography_is_post_lytic_only_after_a_lysis(pathways: Pathways) -> None:
    """cpc.lysis_angio24_rate: the angiography of a primary PCI (no lytic_start) is no
    post-lytic angiography; after a lysis only the angiography at or after it counts."""
    node = pathways.by_center["chest_pain"].nodes["post_lytic_angiography"]
    rule = ("fhir", 50, "post_lytic_angiography/cath_angiography_after_lysis")
    pool = [candidate("before", -10, *rule), candidate("after", 300, *rule)]
    assert resolve(node, pool, arrival_mode="ems", after=None) is None
    resolution = resolve(node, pool, arrival_mode="self", after=T0)
    assert resolution is not None and resolution.instant == T0 + timedelta(minutes=300)


@pytest.mark.parametrize(
    ("mode", "winner"),
    [("ems", "ambulance"), ("self", "his"), ("transfer", "his"), (None, "ambulance")],
)
def test_the_door_by_arrival_mode(door: NodeDefinition, mode: str | None, winner: str) -> None:
    pool = [candidate("ambulance", 0, *AMBULANCE), candidate("his", 8, *HIS, proxy=True)]
    resolution = resolve(door, pool, arrival_mode=mode, after=None)  # type: ignore[arg-type]
    assert resolution is not None and resolution.winners[0].id == winner


def test_no_door_for_in_hospital_onset(door: NodeDefinition) -> None:
    pool = [candidate("uwb", 0, *UWB), candidate("fix", 3, "correction", 1000, None)]
    assert resolve(door, pool, arrival_mode="in_hospital", after=None) is None


def test_the_latest_staff_correction_wins_over_everything(door: NodeDefinition) -> None:
    pool = [
        candidate("uwb", 0, *UWB),
        candidate("fix1", 30, "correction", 1000, None, written=1),
        candidate("fix2", 20, "correction", 1000, None, written=2),
    ]
    resolution = resolve(door, pool, arrival_mode="self", after=None)
    assert resolution is not None and resolution.corrected
    assert resolution.instant == T0 + timedelta(minutes=20)
    assert [w.id for w in resolution.winners] == ["fix2"]
