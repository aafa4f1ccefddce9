"""Cases written into a real FHIR store (SQLite, PostgreSQL) the way the pathway engine writes
them come back as the same CaseTimelines; candidates, other cases and other months stay out."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fhir_store import FhirStore
from pathways.case_store import (
    PATIENTS_PER_SEARCH,
    NotACase,
    load_case,
    load_open_timelines,
    load_timeline,
    load_timelines,
)
from tests.pathways.cases import CST, case, episode, stemi_pci, time_node, write_case

pytestmark = pytest.mark.anyio


async def test_a_stored_case_reads_back_as_its_timeline(store: FhirStore) -> None:
    original = case(
        "cp-1",
        arrival="transfer",
        facts={"diagnosis": "STEMI", "give_up_treatment": False, "iss": 17, "rts": 7.5},
        first_medical_contact=-45,
        door=0,
        seconds={"wire_crossing": 5401},
    )
    await write_case(store, original)
    loaded = await load_case(store, "cp-1")
    # the case opened at its first node (tests.pathways.cases.episode)
    assert loaded.timeline == replace(original, activation=min(original.nodes.values()))
    assert loaded.node_references["door"] == "Observation/cp-1-door"


async def test_candidates_are_not_nodes_and_an_amended_node_is(store: FhirStore) -> None:
    timeline = stemi_pci("cp-2", 3000)
    await write_case(store, timeline)
    later = timeline.nodes["door"] + timedelta(minutes=5)
    await store.update(
        "Observation",
        "cp-2-door-uwb",
        time_node(
            timeline, "door", later - timedelta(hours=2), status="preliminary", suffix="-uwb"
        ),
    )
    await store.update(
        "Observation", "cp-2-first-ecg", time_node(timeline, "first_ecg", later, status="amended")
    )
    loaded = await load_timeline(store, "cp-2")
    assert loaded.nodes["door"] == timeline.nodes["door"]
    assert loaded.nodes["first_ecg"] == later


async def test_two_cases_of_one_patient_keep_their_own_nodes(store: FhirStore) -> None:
    first = stemi_pci("cp-3a", 3000)
    second = case("cp-3b", at=first.nodes["door"] + timedelta(days=120), door=0, first_ecg=7)
    second = type(second)(**{**_fields(second), "patient_id": first.patient_id})
    await write_case(store, first)
    await write_case(store, second)
    assert (await load_timeline(store, "cp-3a")).nodes == first.nodes
    assert (await load_timeline(store, "cp-3b")).nodes == second.nodes


def _fields(timeline: object) -> dict[str, object]:
    return {name: getattr(timeline, name) for name in timeline.__slots__}  # type: ignore[attr-defined]


async def test_cases_are_counted_in_the_shanghai_month_of_their_door(store: FhirStore) -> None:
    boundary = datetime(2026, 1, 31, 16, 30, tzinfo=UTC)  # 2026-02-01 00:30 in Shanghai
    february = stemi_pci("cp-feb", 3000, at=boundary)
    january = stemi_pci("cp-jan", 3000, at=boundary - timedelta(hours=1))
    ward = case(
        "cp-ward",
        arrival="in_hospital",
        at=datetime(2026, 3, 2, tzinfo=CST),
        first_medical_contact=0,
    )
    stroke = case("st-feb", center="stroke", at=boundary, door=0)
    mistaken = stemi_pci("cp-error", 3000, at=boundary)
    mistaken = type(mistaken)(**{**_fields(mistaken), "status": "entered-in-error"})
    for timeline in (february, january, ward, stroke, mistaken):
        await write_case(store, timeline)
    found = await load_timelines(store, "chest_pain", "2026-02", "2026-03")
    assert sorted(t.case_id for t in found) == ["cp-feb", "cp-ward"]  # not the one in error
    assert [t.case_id for t in await load_timelines(store, "chest_pain", "2026-01", "2026-01")] == [
        "cp-jan"
    ]
    assert [t.case_id for t in await load_timelines(store, "stroke", "2026-01", "2026-12")] == [
        "st-feb"
    ]


async def test_many_patients_are_read_in_batches(store: FhirStore) -> None:
    count = PATIENTS_PER_SEARCH + 7
    at = datetime(2026, 5, 1, 8, tzinfo=CST)
    for number in range(count):
        await write_case(
            store, stemi_pci(f"m-{number}", 3000 + number, at=at + timedelta(hours=number))
        )
    found = await load_timelines(store, "chest_pain", "2026-05", "2026-05")
    assert len(found) == count
    by_id = {t.case_id: t for t in found}
    wire = by_id["m-55"].nodes["wire_crossing"] - by_id["m-55"].nodes["door"]
    assert wire == timedelta(seconds=3055)


async def test_an_episode_that_is_no_center_case_is_refused(store: FhirStore) -> None:
    with pytest.raises(NotACase):
        await load_case(store, "nothing-here")
    other = episode(stemi_pci("cp-x"))
    other["type"] = [{"coding": [{"system": "http://example.org/other", "code": "x"}]}]
    await store.update("Patient", "p-cp-x", {"resourceType": "Patient", "id": "p-cp-x"})
    await store.update("EpisodeOfCare", "cp-x", other)
    with pytest.raises(NotACase):
        await load_case(store, "cp-x")


async def test_open_cases_read_with_facts_mode_activation_and_authoritative_nodes(
    store: FhirStore,
) -> None:
    door = datetime(2026, 3, 5, 14, 0, 7, tzinfo=CST)
    facts = {"ivt": True, "onset_approximate": True, "diagnosis": "AIS"}
    stroke = case("st-1", center="stroke", arrival="ems", at=door, facts=facts)
    opened = episode(stroke) | {"period": {"start": (door - timedelta(minutes=5)).isoformat()}}
    undated = time_node(stroke, "ct_end", door) | {"valueDateTime": "2026-03-05"}  # no instant
    closed = replace(case("tr-1", center="trauma", arrival="self"), status="finished")
    for resource in (
        {"resourceType": "Patient", "id": stroke.patient_id},
        opened,
        time_node(stroke, "door", door),
        time_node(stroke, "ct_start", door + timedelta(minutes=3), status="amended"),
        time_node(stroke, "lytic_start", door, status="preliminary"),
        undated,
    ):
        await store.update(resource["resourceType"], resource["id"], resource)
    await write_case(store, closed)

    timelines = {t.case_id: t for t in await load_open_timelines(store)}

    assert closed.case_id not in timelines
    found = timelines[stroke.case_id]
    assert (found.center, found.arrival_mode) == ("stroke", "ems")
    assert found.facts == {"ivt": True, "onset_approximate": True, "diagnosis": "AIS"}
    assert found.activation == door - timedelta(minutes=5)
    assert found.at("activation") == found.activation
    assert found.nodes == {"door": door, "ct_start": door + timedelta(minutes=3)}
    assert (await load_timeline(store, closed.case_id)).status == "finished"
