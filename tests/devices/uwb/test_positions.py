"""Gateway messages through the UWB processor into a real store (SQLite and PostgreSQL): a
bound wristband's zone stays become Encounter location history without losing what the HIS
wrote, the pathways take the door from UWB over the HIS registration, badge taps are recorded,
and unknown tags are refused."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock import migrate as migrate_clocks
from devices.clock.config import ClockSettings
from devices.clock.reader import SavedClocks
from devices.uwb import wristbands
from devices.uwb.errors import UnknownTag
from devices.uwb.positions import UwbProcessor
from devices.uwb.subscriber import UwbSubscriber
from devices.uwb.zones import ZONE_SYSTEM, ZoneMap
from fhir_store import FhirStore, parse_search
from pathways.definitions import load_pathways
from pathways.subscriber import PathwaySubscriber
from pathways.vocabulary import OBSERVATION_CATEGORY_SYSTEM, SOURCE_KIND_SYSTEM, TIME_NODE_SYSTEM
from tests.devices.uwb.conftest import CST, pozyx, sewio
from tests.pathways import resources as r

pytestmark = pytest.mark.anyio

ARRIVED = datetime(2026, 11, 25, 8, 21, 30, tzinfo=CST)  # at the gate; HIS registers at 08:28
GATE, ED, CATH_LAB, OUTSIDE = (5.0, 3.0), (5.0, 10.0), (38.0, 5.0), (60.0, 60.0)


def chest_pain_visit() -> dict[str, Any]:
    """ADT A04 of a walk-in with chest pain: the pathway opens a chest pain case on it."""
    reason = [{"coding": [{"system": r.SNOMED, "code": "29857009"}]}]
    return r.ed_visit(reasonCode=reason)


async def walk(processor: UwbProcessor, tag: str, path: list[tuple[int, tuple[float, float]]],
               message: Any = pozyx, start: datetime = ARRIVED) -> None:  # fmt: skip
    """One fix every 2 s along (seconds after `start`, place) waypoints; 30 s at the last."""
    ends = [begin for begin, _ in path[1:]] + [path[-1][0] + 30]
    for (begin, place), end in zip(path, ends, strict=True):
        for second in range(begin, end, 2):
            await processor.handle(message(tag, start + timedelta(seconds=second), *place))


async def bound_t1(database: AsyncEngine, store: FhirStore, zones: ZoneMap) -> UwbProcessor:
    """Patient p1's chest pain visit v1 in the store, wristband T-1 bound to it."""
    await store.update("Patient", "p1", r.patient())
    await store.update("Encounter", "v1", chest_pain_visit())
    await wristbands.bind(database, "T-1", "p1", "v1", ARRIVED)
    return UwbProcessor(database, store, zones, CST)


async def search(store: FhirStore, kind: str, *pairs: tuple[str, str]) -> list[dict[str, Any]]:
    page = await store.search(parse_search(kind, [*pairs, ("_count", "200")], strict=True))
    return [json.loads(content) for content in page.contents]


async def test_a_bound_wristband_gives_the_door_and_cath_lab_nodes_over_the_his_time(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    await store.update("Patient", "p1", r.patient())
    await store.update("Encounter", "v1", chest_pain_visit())
    await wristbands.bind(database, "T-42", "p1", "v1", ARRIVED - timedelta(minutes=1))
    processor = UwbProcessor(database, store, zones, CST)
    await walk(processor, "T-42", [(0, GATE), (40, ED)])
    # the HIS writes the visit again (an A08) while the patient is in triage: kept
    current = await store.read("Encounter", "v1")
    await store.update("Encounter", "v1", current | {"priority": {"text": "urgent"}})
    await walk(processor, "T-42", [(600, CATH_LAB), (700, OUTSIDE), (800, OUTSIDE)])

    encounter = await store.read("Encounter", "v1")
    assert encounter["priority"] == {"text": "urgent"}
    assert encounter["reasonCode"] == chest_pain_visit()["reasonCode"]
    stays = [(e["location"]["identifier"]["value"], e["status"], e["period"])
             for e in encounter["location"]]  # fmt: skip
    assert stays == [
        ("gate", "completed", {"start": "2026-11-25T08:21:30+08:00",
                               "end": "2026-11-25T08:22:10+08:00"}),
        ("ed", "completed", {"start": "2026-11-25T08:22:10+08:00",
                             "end": "2026-11-25T08:31:30+08:00"}),
        ("cath-lab", "completed", {"start": "2026-11-25T08:31:30+08:00",
                                   "end": "2026-11-25T08:33:10+08:00"}),
    ]  # fmt: skip
    assert all(e["location"]["identifier"]["system"] == ZONE_SYSTEM for e in encounter["location"])

    subscriber = PathwaySubscriber(database, name="pathways", timezone=CST,
                                   pathways=load_pathways())  # fmt: skip
    try:
        await subscriber.start()
        await subscriber.catch_up()
    finally:
        await subscriber.aclose()
    category = f"{OBSERVATION_CATEGORY_SYSTEM}|time-node"
    found = {o["code"]["coding"][0]["code"]: o
             for o in await search(store, "Observation", ("category", category))
             if o["status"] == "final"}  # fmt: skip
    assert found["door"]["valueDateTime"] == "2026-11-25T08:21:30+08:00"  # not 08:28 (HIS)
    assert found["cath_lab_arrival"]["valueDateTime"] == "2026-11-25T08:31:30+08:00"
    for node in ("door", "cath_lab_arrival"):
        winner = found[node]["derivedFrom"][0]["reference"].split("/")[1]
        candidate = await store.read("Observation", winner)
        assert candidate["method"]["coding"][0] == {"system": SOURCE_KIND_SYSTEM, "code": "uwb"}
    door_candidates = await search(store, "Observation", ("code", f"{TIME_NODE_SYSTEM}|door"))
    assert {"2026-11-25T08:28:00+08:00", "2026-11-25T08:21:30+08:00"} <= {
        o["valueDateTime"] for o in door_candidates
    }  # the HIS time is there, outranked


async def test_stays_an_his_update_replaced_are_written_again(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    """ADT A08 maps to a whole-Encounter PUT without the UWB stays: the UWB subscriber puts them
    back, and the door stays the UWB gate time."""
    await bound_t1(database, store, zones)
    uwb = UwbSubscriber(database, name="uwb-encounters", zones=zones, timezone=CST)
    pathways = PathwaySubscriber(database, name="pathways", timezone=CST,
                                 pathways=load_pathways())  # fmt: skip
    try:
        await uwb.catch_up()
        await pathways.start()
        await walk(UwbProcessor(database, store, zones, CST), "T-1", [(0, GATE), (30, ED)])
        before = (await store.read("Encounter", "v1"))["location"]
        await store.update("Encounter", "v1", chest_pain_visit() | {"priority": {"text": "A08"}})
        await uwb.catch_up()
        await uwb.catch_up()  # its own write comes back as a change: nothing more to do
        await pathways.catch_up()
    finally:
        await uwb.aclose()
        await pathways.aclose()
    after = await store.read("Encounter", "v1")
    assert after["priority"] == {"text": "A08"}
    assert after["location"] == before
    category = f"{OBSERVATION_CATEGORY_SYSTEM}|time-node"
    (door,) = [o for o in await search(store, "Observation", ("category", category))
               if o["code"]["coding"][0]["code"] == "door" and o["status"] == "final"]  # fmt: skip
    assert door["valueDateTime"] == "2026-11-25T08:21:30+08:00"


async def test_replaying_the_same_messages_changes_nothing(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    processor = await bound_t1(database, store, zones)
    await walk(processor, "T-1", [(0, GATE), (30, ED)], message=sewio)
    first = await store.read("Encounter", "v1")
    await walk(processor, "T-1", [(0, GATE), (30, ED)], message=sewio)
    again = await store.read("Encounter", "v1")
    assert again["meta"]["versionId"] == first["meta"]["versionId"]
    assert [e["location"]["identifier"]["value"] for e in again["location"]] == ["gate", "ed"]


async def test_unsure_fixes_are_dropped(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    processor = await bound_t1(database, store, zones)
    for second in range(0, 40, 2):  # 40 s "in CT" with a 3 m uncertainty radius
        outcome = await processor.handle(sewio("T-1", ARRIVED + timedelta(seconds=second),
                                                28, 5, clr=3.0))  # fmt: skip
        assert outcome.dropped == 1
    assert "location" not in await store.read("Encounter", "v1")


async def test_an_unbound_wristband_moves_without_writing_any_encounter(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    await wristbands.register(database, "T-9", ARRIVED)
    processor = UwbProcessor(database, store, zones, CST)
    await walk(processor, "T-9", [(0, GATE)])
    assert await search(store, "Encounter") == []
    (row,) = await wristbands.board(database, zones, ARRIVED + timedelta(seconds=30))
    assert (row.status, row.where) == ("idle", "gate")


async def test_an_unknown_tag_is_refused_and_nothing_is_written(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    processor = UwbProcessor(database, store, zones, CST)
    with pytest.raises(UnknownTag, match="tag 777 is not registered"):
        await processor.handle(pozyx("777", ARRIVED, *GATE))
    assert await wristbands.board(database, zones, ARRIVED) == []


async def test_a_badge_tap_records_who_and_when(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    await wristbands.register(database, "B-7", ARRIVED, kind="badge", practitioner_id="dr-li")
    processor = UwbProcessor(database, store, zones, CST)
    tap = {"badgeId": "B-7", "readerId": "cathlab-door", "action": "cath-lab-team-arrived",
           "timestamp": "2026-11-25T08:47:10+08:00"}  # fmt: skip
    await processor.handle(json.dumps(tap).encode())
    await processor.handle(json.dumps(tap).encode())  # resent: stored once
    (observation,) = await search(store, "Observation", ("performer", "Practitioner/dr-li"))
    assert observation["effectiveDateTime"] == "2026-11-25T08:47:10+08:00"
    assert observation["code"]["coding"][0]["code"] == "badge-tap"
    assert observation["valueCodeableConcept"]["coding"][0]["code"] == "cath-lab-team-arrived"
    assert observation["meta"]["versionId"] == "1"
    with pytest.raises(UnknownTag, match="not a staff badge"):
        await wristbands.register(database, "T-2", ARRIVED)
        await processor.handle(json.dumps(tap | {"badgeId": "T-2"}).encode())


async def test_a_fast_gateway_clock_is_corrected_into_the_stays_and_the_correction_recorded(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    """The gateway stamps its fixes 300 s ahead of true time (the monitor has estimated it from
    the fixes' own times): the stays go into the Encounter in true time, each with the device
    time and the offset taken off, and a replay writes nothing new."""
    await migrate_clocks(database)
    clocks = SavedClocks(database, ClockSettings(min_samples=5))
    for n in range(6):  # what the monitor knows of the gateway's clock
        received = ARRIVED - timedelta(minutes=6 - n, seconds=-0.4)
        sent = (received + timedelta(seconds=300)).replace(microsecond=0)
        clocks.registry.observe("uwb-mqtt", sent, received)
    await bound_t1(database, store, zones)
    processor = UwbProcessor(database, store, zones, CST, clocks=clocks, clock_source="uwb-mqtt")
    fast = ARRIVED + timedelta(seconds=300)
    await walk(processor, "T-1", [(0, GATE), (30, ED)], start=fast)

    encounter = await store.read("Encounter", "v1")
    gate, ed = (e for e in encounter["location"] if "identifier" in e["location"])
    assert gate["period"]["start"] == ARRIVED.isoformat()  # true time, not the gateway's
    assert gate["period"]["end"] == ed["period"]["start"] == "2026-11-25T08:22:00+08:00"
    (record,) = gate["period"]["_start"]["extension"]
    parts = {part["url"]: part for part in record["extension"]}
    assert parts["deviceTime"]["valueDateTime"] == fast.isoformat()
    assert round(parts["offset"]["valueQuantity"]["value"]) == 300
    assert parts["source"]["valueString"] == "uwb-mqtt"
    await walk(processor, "T-1", [(0, GATE), (30, ED)], start=fast)
    again = await store.read("Encounter", "v1")
    assert again["meta"]["versionId"] == encounter["meta"]["versionId"]
