"""Where a clock stands at a chosen instant: before, at and after its deadlines, stopped by its
end node before or after them, and not applicable by the case's facts or arrival mode."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pathways.clock_rules import ClockRule
from pathways.clocks import elapsed, evaluate, next_deadline
from pathways.timeline import CaseTimeline
from tests.pathways.rules_text import rules_from_text

CST = timezone(timedelta(hours=8))
DOOR = datetime(2026, 3, 5, 14, 0, 0, tzinfo=CST)

RULES = """\
clocks:
  - id: cpc.d2n
    title: {zh: 门-针时间, en: Door to needle}
    start: door
    end: [lytic_start]
    when:
      - arrival_mode: {not_in: [in_hospital]}
      - {fact: reperfusion, in: [in_hospital_lysis]}
    steps:
      - {name: warning, at_minutes: 20, severity: warning}
      - {name: limit, at_minutes: 30, severity: critical}
  - id: cpc.fmc2ecg
    title: {zh: 首次医疗接触到首份心电图, en: FMC to first ECG}
    start: first_medical_contact
    end: [first_ecg, ecg_diagnosis]
    steps:
      - {name: warning, at_minutes: 8, severity: warning}
"""


def _rules() -> list[ClockRule]:
    return rules_from_text(RULES)


def _case(
    nodes: dict[str, datetime],
    *,
    mode: str | None = "self",
    facts: Mapping[str, str | bool] | None = None,
) -> CaseTimeline:
    return CaseTimeline(
        case_id="c1",
        center="chest_pain",
        patient_id="p1",
        arrival_mode=mode,  # type: ignore[arg-type]
        nodes=nodes,
        facts={"reperfusion": "in_hospital_lysis"} if facts is None else facts,
    )


def test_before_the_first_deadline_the_clock_runs_toward_it() -> None:
    state = evaluate(_rules(), _case({"door": DOOR}), DOOR + timedelta(minutes=19, seconds=59))[0]

    assert state.status == "running"
    assert state.elapsed_s == 19 * 60 + 59
    assert state.next_deadline == DOOR + timedelta(minutes=20)
    assert state.reached == ()


def test_at_the_deadline_instant_the_alert_is_due() -> None:
    state = evaluate(_rules(), _case({"door": DOOR}), DOOR + timedelta(minutes=20))[0]

    assert state.status == "alerting"
    assert [s.step.name for s in state.reached] == ["warning"]
    assert state.reached[0].deadline == DOOR + timedelta(minutes=20)
    assert state.next_deadline == DOOR + timedelta(minutes=30)


def test_after_the_last_deadline_every_step_is_due_and_nothing_is_ahead() -> None:
    state = evaluate(_rules(), _case({"door": DOOR}), DOOR + timedelta(minutes=31))[0]

    assert state.status == "alerting"
    assert [s.step.name for s in state.reached] == ["warning", "limit"]
    assert state.next_deadline is None
    assert state.elapsed_s == 31 * 60


def test_an_end_node_before_the_first_deadline_meets_the_clock() -> None:
    needle = DOOR + timedelta(minutes=17, seconds=5)
    case = _case({"door": DOOR, "lytic_start": needle})
    state = evaluate(_rules(), case, DOOR + timedelta(hours=2))[0]

    assert state.status == "met"
    assert (state.end_node, state.ended_at, state.elapsed_s) == ("lytic_start", needle, 1025)
    assert state.reached == ()
    assert state.next_deadline is None


def test_an_end_node_after_a_deadline_resolves_the_alert_it_was_due_for() -> None:
    needle = DOOR + timedelta(minutes=25)
    state = evaluate(
        _rules(), _case({"door": DOOR, "lytic_start": needle}), DOOR + timedelta(hours=1)
    )[0]

    assert state.status == "resolved"
    assert [s.step.name for s in state.reached] == ["warning"]  # the limit was not missed
    assert state.elapsed_s == 25 * 60


def test_an_end_node_at_the_deadline_instant_counts_as_after_it() -> None:
    case = _case({"door": DOOR, "lytic_start": DOOR + timedelta(minutes=20)})

    assert evaluate(_rules(), case, DOOR + timedelta(hours=1))[0].status == "resolved"


def test_the_earliest_of_several_end_nodes_stops_the_clock() -> None:
    fmc = DOOR
    case = _case(
        {
            "first_medical_contact": fmc,
            "first_ecg": fmc + timedelta(minutes=9),
            "ecg_diagnosis": fmc + timedelta(minutes=4),
        }
    )
    state = evaluate(_rules(), case, fmc + timedelta(minutes=30))[1]

    assert (state.status, state.end_node) == ("met", "ecg_diagnosis")


@pytest.mark.parametrize(
    ("mode", "facts", "reason"),
    [
        ("in_hospital", {"reperfusion": "in_hospital_lysis"}, "arrival mode is in_hospital"),
        ("ems", {"reperfusion": "primary_pci"}, "fact reperfusion is primary_pci"),
        ("ems", {}, "fact reperfusion is missing"),
    ],
)
def test_a_case_outside_the_rule_is_not_applicable_saying_why(
    mode: str, facts: dict[str, str], reason: str
) -> None:
    case = _case({"door": DOOR}, mode=mode, facts=facts)
    state = evaluate(_rules(), case, DOOR + timedelta(hours=1))[0]

    assert (state.status, state.reason) == ("not_applicable", reason)
    assert state.next_deadline is None


def test_an_unknown_arrival_mode_does_not_stop_a_door_clock() -> None:
    state = evaluate(_rules(), _case({"door": DOOR}, mode=None), DOOR + timedelta(minutes=1))[0]

    assert state.status == "running"


def test_without_its_start_node_a_clock_has_not_started() -> None:
    state = evaluate(_rules(), _case({}), DOOR)[0]

    assert (state.status, state.reason) == ("not_started", "no door yet")


def test_next_deadline_is_the_earliest_among_running_clocks() -> None:
    case = _case({"door": DOOR, "first_medical_contact": DOOR - timedelta(minutes=5)})
    states = evaluate(_rules(), case, DOOR)

    assert next_deadline(states) == DOOR + timedelta(minutes=3)  # FMC + 8 min


def test_instants_in_other_offsets_compare_as_instants() -> None:
    door_utc = DOOR.astimezone(UTC)
    state = evaluate(_rules(), _case({"door": door_utc}), DOOR + timedelta(minutes=20))[0]

    assert state.status == "alerting"


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        evaluate(_rules(), _case({"door": DOOR}), datetime(2026, 3, 5, 14, 30))  # noqa: DTZ001
    with pytest.raises(ValueError, match="door is a naive datetime"):
        evaluate(_rules(), _case({"door": DOOR.replace(tzinfo=None)}), DOOR)


def test_elapsed_since_onset_and_door_in_whole_seconds() -> None:
    case = _case(
        {"symptom_onset": DOOR - timedelta(hours=2, seconds=30), "door": DOOR},
        facts={"onset_approximate": True},
    )
    now = DOOR + timedelta(minutes=12, seconds=7, microseconds=900_000)

    times = elapsed(case, now)

    assert times.onset_node == "symptom_onset"
    assert times.since_onset_s == 2 * 3600 + 30 + 12 * 60 + 7
    assert times.since_door_s == 12 * 60 + 7
    assert times.onset_approximate is True


def test_elapsed_falls_back_to_last_known_well_and_has_no_door_for_in_hospital_onset() -> None:
    lkw = DOOR - timedelta(hours=5)
    case = _case({"last_known_well": lkw}, mode="in_hospital")

    times = elapsed(case, DOOR)

    assert (times.onset_node, times.since_onset_s, times.since_door_s) == (
        "last_known_well",
        5 * 3600,
        None,
    )


def test_a_clock_may_start_at_the_case_activation_which_is_no_time_node() -> None:
    (rule,) = rules_from_text(
        """\
clocks:
  - id: cpc.activation2ecg
    title: {zh: 启动到首份心电图, en: Activation to first ECG}
    start: activation
    end: [first_ecg]
    steps:
      - {name: warning, at_minutes: 10, severity: warning}
""",
        node_keys=("first_ecg", "door"),
    )
    opened = replace(_case({"door": DOOR}), activation=DOOR - timedelta(minutes=4))

    (state,) = evaluate([rule], opened, DOOR + timedelta(minutes=7))
    (not_opened,) = evaluate([rule], _case({"door": DOOR}), DOOR)

    assert (state.status, state.started_at, state.elapsed_s) == (
        "alerting",
        DOOR - timedelta(minutes=4),
        660,
    )
    assert "activation" not in opened.nodes
    assert not_opened.status == "not_started"
