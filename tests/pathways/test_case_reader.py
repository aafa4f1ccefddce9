"""The interim reader of open cases (until `pathways.case_store`): an EpisodeOfCare and its
authoritative time nodes from a real FHIR store, as the clocks see them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database
from pathways._case_reader import case_of_observation, load_open_timelines, load_timeline
from tests.pathways.fhir_cases import write_case, write_node

pytestmark = pytest.mark.anyio

CST = timezone(timedelta(hours=8))
DOOR = datetime(2026, 3, 5, 14, 0, 7, tzinfo=CST)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[FhirStore]:
    database = create_database(database_url)
    await migrate(database)
    fhir = FhirStore(database)
    try:
        yield fhir
    finally:
        await fhir.aclose()
        await database.dispose()


async def test_an_open_case_reads_with_its_facts_mode_activation_and_final_nodes(
    store: FhirStore,
) -> None:
    episode = await write_case(
        store,
        "stroke",
        mode="ems",
        facts={"reperfusion": "ivt", "onset_approximate": True, "nihss": 12},
        opened=DOOR - timedelta(minutes=5),
    )
    await write_node(store, episode, "door", DOOR)
    await write_node(store, episode, "ct_start", DOOR + timedelta(minutes=3), status="amended")
    await write_node(store, episode, "lytic_start", DOOR, status="preliminary")  # a candidate
    await write_node(store, episode, "ct_end", "2026-03-05")  # a date is no instant
    other = await write_case(store, "chest_pain", mode="self")
    await write_node(store, other, "door", DOOR - timedelta(hours=1))

    (stroke,) = [t for t in await load_open_timelines(store) if t.case_id == episode["id"]]

    assert stroke.center == "stroke"
    assert stroke.arrival_mode == "ems"
    assert stroke.patient_id == episode["patient"]["reference"].removeprefix("Patient/")
    assert stroke.facts == {"reperfusion": "ivt", "onset_approximate": True, "nihss": 12}
    assert stroke.nodes == {
        "activation": DOOR - timedelta(minutes=5),
        "door": DOOR,
        "ct_start": DOOR + timedelta(minutes=3),
    }


async def test_closed_cases_are_not_open_but_still_read_by_id(store: FhirStore) -> None:
    episode = await write_case(store, "trauma", mode="self", status="finished")

    assert [t.case_id for t in await load_open_timelines(store)] == []
    timeline = await load_timeline(store, str(episode["id"]))
    assert timeline is not None and timeline.status == "finished"
    assert await load_timeline(store, "no-such-case") is None


async def test_only_time_node_observations_name_a_case(store: FhirStore) -> None:
    episode = await write_case(store, "chest_pain", mode="self")
    node = await write_node(store, episode, "door", DOOR)
    lab = dict(node, category=[{"coding": [{"system": "http://x", "code": "laboratory"}]}])

    assert case_of_observation(node) == episode["id"]
    assert case_of_observation(lab) is None
