"""Zone entry and exit with hysteresis (devices/uwb/tracker.py): the cases a hospital would
notice (a patient wheeled through the gate, a tag jittering at a wall, a tag that goes quiet)
and properties over random fix sequences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from devices.uwb.tracker import Entered, Left, TagState, ZoneEvent, presence, step
from devices.uwb.zones import Timing

T0 = datetime(2026, 11, 25, 0, 20, 0, tzinfo=UTC)
TIMING = Timing(dwell_s=10, exit_after_s=60, silent_after_s=120, max_error_m=1.0)


def run(
    fixes: list[tuple[float, str | None]], state: TagState | None = None
) -> tuple[TagState, list[ZoneEvent]]:
    """Feed (seconds after T0, zone) fixes; the end state and every event."""
    state = state or TagState()
    events: list[ZoneEvent] = []
    for seconds, zone in fixes:
        state, new = step(state, zone, T0 + timedelta(seconds=seconds), TIMING)
        events.extend(new)
    return state, events


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_entry_needs_the_dwell_and_dates_from_the_first_fix_in_the_zone() -> None:
    state, events = run([(0, None), (1, "gate"), (2, "gate"), (6, "gate"), (10, "gate")])
    assert events == []  # 9 s in the gate: not yet
    state, events = run([(11, "gate")], state)
    assert events == [Entered("gate", at(1))]
    assert state.zone == "gate"


def test_a_walk_through_shorter_than_the_dwell_is_no_entry() -> None:
    _, events = run([(0, "ed"), (12, "ed"), (15, "ct"), (18, "ct"), (21, "ed"), (40, "ed")])
    assert events == [Entered("ed", at(0))]  # the 6 s in CT left no trace


def test_exit_to_no_zone_needs_the_longer_timeout_and_dates_from_the_first_fix_outside() -> None:
    state, _ = run([(0, "resus"), (20, "resus")])
    state, events = run([(30, None), (50, None), (89, None)], state)
    assert events == []  # 59 s outside
    _, events = run([(90, None)], state)
    assert events == [Left("resus", at(30))]


def test_a_short_absence_does_not_end_the_stay() -> None:
    _, events = run([(0, "resus"), (20, "resus"), (30, None), (80, None), (85, "resus"),
                     (140, None), (199, None)])  # fmt: skip
    assert events == [Entered("resus", at(0))]


def test_moving_to_another_zone_leaves_the_first_when_the_second_is_entered() -> None:
    _, events = run([(0, "gate"), (15, "gate"), (20, "ed"), (25, "ed"), (30, "ed")])
    assert events == [Entered("gate", at(0)), Left("gate", at(20)), Entered("ed", at(20))]


def test_jitter_at_a_wall_changes_nothing() -> None:
    fixes: list[tuple[float, str | None]] = [(0, "ct"), (12, "ct")]
    fixes += [(13 + n, "cath-lab" if n % 2 else "ct") for n in range(300)]
    state, events = run(fixes)
    assert events == [Entered("ct", at(0))]
    assert state.zone == "ct"


def test_a_silent_tag_is_unknown_not_left_and_its_stay_goes_on() -> None:
    state, events = run([(0, "cath-lab"), (15, "cath-lab")])
    assert presence(state, at(100), TIMING) == "cath-lab"
    assert presence(state, at(15 + 121), TIMING) == "unknown"  # silent: not "outside"
    state, events = run([(900, "cath-lab"), (960, "cath-lab")], state)  # heard again, still there
    assert events == []
    assert state.entered_at == at(0)


def test_after_silence_a_fix_outside_starts_the_exit_timeout_afresh() -> None:
    state, _ = run([(0, "ccu"), (15, "ccu")])
    state, events = run([(600, None)], state)  # heard again after 10 minutes, outside
    assert events == []
    _, events = run([(630, None), (660, None)], state)
    assert events == [Left("ccu", at(600))]


def test_a_replayed_or_late_fix_changes_nothing() -> None:
    state, _ = run([(0, "gate"), (15, "gate")])
    again, events = run([(5, "ed"), (15, None)], state)
    assert (again, events) == (state, [])


def test_the_state_survives_json() -> None:
    state, _ = run([(0, "gate"), (15, "gate"), (20, "ed")])
    assert TagState.from_json(state.to_json()) == state


ZONES = st.sampled_from(["gate", "ed", "resus", None])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(0.1, 200), ZONES), max_size=80))
def test_entries_and_exits_of_a_zone_alternate_and_entries_are_fixes_in_it(
    steps: list[tuple[float, str | None]],
) -> None:
    clock, fixes = 0.0, []
    for gap, zone in steps:
        clock += gap
        fixes.append((clock, zone))
    _, events = run(fixes)
    inside: str | None = None
    for event in events:
        if isinstance(event, Entered):
            assert inside is None, "entered while still in a zone"
            assert event.at in {at(s) for s, z in fixes if z == event.zone}
            inside = event.zone
        else:
            assert event.zone == inside, "left a zone it was not in"
            inside = None
    times = [e.at for e in events]
    assert times == sorted(times)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=60),
    st.floats(0.2, 1.9),
)
def test_jitter_faster_than_the_dwell_never_makes_flapping_entries(
    runs: list[tuple[int, int]], period: float
) -> None:
    """Once in resus, fixes flipping between resus and CT in runs of at most 5 fixes (under
    10 s on either side) make no event at all, however they fall."""
    state, _ = run([(0, "resus"), (11, "resus")])
    fixes: list[tuple[float, str | None]] = []
    clock = 11.0
    for ct, resus in runs:
        for side, count in (("ct", ct), ("resus", resus)):
            for _ in range(count):
                clock += period
                fixes.append((clock, side))
    state, events = run(fixes, state)
    assert events == []
    assert state.zone == "resus"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(121, 3600), min_size=1, max_size=20))
def test_silence_alone_never_makes_an_exit(gaps: list[float]) -> None:
    state, _ = run([(0, "icu"), (15, "icu")])
    clock = 15.0
    for gap in gaps:
        clock += gap
        state, events = run([(clock, "icu")], state)
        assert events == []
    assert state.zone == "icu"
