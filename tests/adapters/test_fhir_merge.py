"""Merge mode through the FHIR destination (SQLite and PostgreSQL): the shipped ADT mapping's A08
rewrites the visit and the HIS's case but keeps what the pathway engine and the UWB feed added;
a replay changes nothing; a writer that commits between the destination's read and its write is
not lost (412, merged again)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapters.fhir import FhirDestination, FhirDestinationConfig
from adapters.hl7v2 import parse_for_mapping
from engine.connectors import Delivered, Outbound
from engine.mapping import load_mapping
from fhir_store import FhirStore, migrate
from fhir_store.app import create_database

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
ADT = load_mapping(ROOT / "mappings" / "hl7v2" / "adt.yaml")
A04 = (ROOT / "mappings" / "tests" / "samples" / "adt-a04-chest-pain-utf8.hl7").read_bytes()
# the same visit updated: the patient moved to bed 2 of the resus room
A08 = (
    A04.replace(b"ADT^A04^ADT_A01|ADT-A04-CP-01", b"ADT^A08^ADT_A01|ADT-A08-CP-01")
    .replace(b"EVN|A04", b"EVN|A08")
    .replace(b"EICU^1^^", b"EICU^2^^")
)
CASE_FACT = "https://greenchannel.example.org/fhir/StructureDefinition/case-fact"
CASE_LINK = "https://greenchannel.example.org/fhir/StructureDefinition/case-link"
ENGINE_LINK = {
    "extension": [{"url": CASE_LINK, "valueCode": "pathway-engine"}],
    "reference": "EpisodeOfCare/case-engine-opened",
}
UWB = "urn:greenchannel:uwb-zone"


def uwb_stay(zone: str, start: str) -> dict[str, Any]:
    return {
        "location": {
            "reference": f"Location/uwb-{zone}",
            "identifier": {"system": UWB, "value": zone},
        },
        "status": "completed",
        "period": {"start": start},
    }


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[FhirStore]:
    database = create_database(database_url)
    await migrate(database)
    fhir = FhirStore(database, check_references=False)
    try:
        yield fhir
    finally:
        await fhir.aclose()
        await database.dispose()


def config() -> FhirDestinationConfig:
    return FhirDestinationConfig.model_validate({"kind": "fhir"})


def outbound(raw: bytes, message_id: int) -> Outbound:
    bundle = ADT.apply(parse_for_mapping(raw, "utf-8"))
    return Outbound(
        message_id=message_id,
        channel="his-adt",
        destination="fhir",
        payload=json.dumps(bundle, ensure_ascii=False).encode(),
        media_type="application/fhir+json",
        attempt=1,
    )


def ids(raw: bytes) -> dict[str, str]:
    bundle = ADT.apply(parse_for_mapping(raw, "utf-8"))
    return {e["resource"]["resourceType"]: e["resource"]["id"] for e in bundle["entry"]}


def content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k != "meta"}


async def add_other_writers(store: FhirStore, encounter_id: str, episode_id: str) -> None:
    """What the pathway engine and the UWB feed write on the visit and the HIS's case."""
    encounter = content(await store.read("Encounter", encounter_id))
    encounter["episodeOfCare"] = [*encounter.get("episodeOfCare", []), ENGINE_LINK]
    encounter["location"] = [*encounter["location"], uwb_stay("gate", "2026-11-25T08:11:40+08:00")]
    await store.update("Encounter", encounter_id, encounter)
    episode = content(await store.read("EpisodeOfCare", episode_id))
    fact = {
        "url": CASE_FACT,
        "extension": [
            {"url": "name", "valueCode": "reperfusion"},
            {"url": "value", "valueString": "primary_pci"},
            {"url": "source", "valueString": "manual"},
        ],
    }
    episode["extension"] = [*episode.get("extension", []), fact]
    await store.update("EpisodeOfCare", episode_id, episode)


async def test_an_a08_keeps_what_other_writers_added_and_a_replay_changes_nothing(
    store: FhirStore,
) -> None:
    destination = FhirDestination(store, config())
    written = ids(A04)
    encounter_id, episode_id = written["Encounter"], written["EpisodeOfCare"]
    assert isinstance(await destination.send(outbound(A04, 1)), Delivered)
    await add_other_writers(store, encounter_id, episode_id)

    assert isinstance(await destination.send(outbound(A08, 2)), Delivered)
    encounter = await store.read("Encounter", encounter_id)
    assert encounter["episodeOfCare"] == [
        {"reference": f"EpisodeOfCare/{episode_id}"},  # the HIS's own (ZGC), from the A08
        ENGINE_LINK,  # kept
    ]
    beds = [loc["location"].get("display") for loc in encounter["location"]]
    systems = [loc["location"].get("identifier", {}).get("system") for loc in encounter["location"]]
    assert systems[-1] == UWB and systems.count(UWB) == 1  # the UWB stay kept, once
    assert len(encounter["location"]) == 2, beds  # the A08's ward and the UWB gate stay
    assert "2" in json.dumps(encounter["location"][0], ensure_ascii=False)  # the A08's bed
    episode = await store.read("EpisodeOfCare", episode_id)
    assert [e["url"] for e in episode["extension"]].count(CASE_FACT) == 1

    before = content(encounter), content(episode)
    assert isinstance(await destination.send(outbound(A08, 3)), Delivered)  # the HIS resends
    after = (
        content(await store.read("Encounter", encounter_id)),
        content(await store.read("EpisodeOfCare", episode_id)),
    )
    assert after == before


class RacingStore(FhirStore):
    """A store on which the UWB feed commits a new zone stay right after the destination reads
    the Encounter, the first time only: the destination's write then finds another version."""

    raced = False

    async def read_many(
        self, keys: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, Any]]:
        found = await super().read_many(keys)
        for (resource_type, resource_id), current in found.items():
            if resource_type == "Encounter" and not self.raced:
                self.raced = True
                updated = content(current)
                updated["location"] = [
                    *updated["location"],
                    uwb_stay("resus", "2026-11-25T08:14:05+08:00"),
                ]
                await super().update(resource_type, resource_id, updated)
        return found


async def test_a_writer_between_the_read_and_the_write_is_not_lost(
    store: FhirStore, database_url: str
) -> None:
    encounter_id = ids(A04)["Encounter"]
    assert isinstance(await FhirDestination(store, config()).send(outbound(A04, 1)), Delivered)
    racing = RacingStore(store.database, check_references=False)
    try:
        assert isinstance(await FhirDestination(racing, config()).send(outbound(A08, 2)), Delivered)
    finally:
        await racing.aclose()
    assert racing.raced
    encounter = await store.read("Encounter", encounter_id)
    zones = [
        loc["location"]["identifier"]["value"]
        for loc in encounter["location"]
        if loc["location"].get("identifier", {}).get("system") == UWB
    ]
    assert zones == ["resus"]  # the racing write survived the A08


async def test_two_messages_of_one_batch_merge_in_order(store: FhirStore) -> None:
    destination = FhirDestination(store, config())
    written = ids(A04)
    assert isinstance(await destination.send(outbound(A04, 1)), Delivered)
    await add_other_writers(store, written["Encounter"], written["EpisodeOfCare"])
    results = await destination.send_many([outbound(A08, 2), outbound(A08, 3)])
    assert all(isinstance(r, Delivered) for r in results), results
    encounter = await store.read("Encounter", written["Encounter"])
    assert "EpisodeOfCare/case-engine-opened" in json.dumps(encounter["episodeOfCare"])
    systems = [loc["location"].get("identifier", {}).get("system") for loc in encounter["location"]]
    assert systems.count(UWB) == 1


def _event(raw: bytes, event: str, control_id: str) -> bytes:
    header = f"ADT^{event}^ADT_A01|{control_id}".encode()
    return raw.replace(b"ADT^A04^ADT_A01|ADT-A04-CP-01", header).replace(
        b"EVN|A04", f"EVN|{event}".encode()
    )


# the discharge: PV1-45 (the field after PV1-44, the admit time) is when the patient left
A03 = _event(A04, "A03", "ADT-A03-CP-01").replace(
    b"20261125081200+0800\rZGC", b"20261125081200+0800|20261125163000+0800\rZGC"
)
# a demographic fix sent after the discharge: the whole visit again, the case as registered
A08_LATE = _event(A04, "A08", "ADT-A08-CP-02").replace(
    b"20261125081200+0800\rZGC", b"20261125081200+0800|20261125163000+0800\rZGC"
)


async def test_a_late_a08_leaves_a_case_the_engine_finished_finished(store: FhirStore) -> None:
    """The pathway engine finishes the case on the A03's discharge node (docs/pathways.md);
    an A08 sent afterwards restates an open visit (status active, no end) and must not open the
    case again nor drop its end. The facts stay too, and a replay changes nothing."""
    destination = FhirDestination(store, config())
    episode_id = ids(A04)["EpisodeOfCare"]
    assert isinstance(await destination.send(outbound(A04, 1)), Delivered)
    assert isinstance(await destination.send(outbound(A03, 2)), Delivered)
    # the engine's own finishing write: the discharge node's instant as the end
    episode = content(await store.read("EpisodeOfCare", episode_id))
    episode["status"] = "finished"
    episode["period"] = {**episode["period"], "end": "2026-11-25T16:30:00+08:00"}
    await store.update("EpisodeOfCare", episode_id, episode)
    finished = content(await store.read("EpisodeOfCare", episode_id))

    assert isinstance(await destination.send(outbound(A08_LATE, 3)), Delivered)
    after = content(await store.read("EpisodeOfCare", episode_id))
    assert isinstance(await destination.send(outbound(A08_LATE, 4)), Delivered)
    replayed = content(await store.read("EpisodeOfCare", episode_id))

    assert after["status"] == "finished"
    assert after["period"] == {
        "start": "2026-11-25T08:10:00+08:00",
        "end": "2026-11-25T16:30:00+08:00",
    }
    assert after == finished and replayed == after


async def test_an_a08_still_cancels_or_updates_an_open_case(store: FhirStore) -> None:
    """The hold covers only a finished case: an open case takes the A08's status, and a
    cancel (ZGC-4 C) of a finished one applies."""
    destination = FhirDestination(store, config())
    episode_id = ids(A04)["EpisodeOfCare"]
    assert isinstance(await destination.send(outbound(A04, 1)), Delivered)
    a08 = _event(A04, "A08", "ADT-A08-CP-03")  # before the discharge
    assert isinstance(await destination.send(outbound(a08, 2)), Delivered)
    still_open = await store.read("EpisodeOfCare", episode_id)
    assert isinstance(await destination.send(outbound(A03, 3)), Delivered)
    cancel = a08.replace(b"|20261125081000+0800|A|1", b"|20261125081000+0800|C|1")
    assert isinstance(await destination.send(outbound(cancel, 4)), Delivered)
    cancelled = await store.read("EpisodeOfCare", episode_id)

    assert (still_open["status"], still_open["period"].get("end")) == ("active", None)
    assert cancelled["status"] == "cancelled"


SAMPLES = ROOT / "mappings" / "tests" / "samples"
STAYS = [
    SAMPLES / "adt-seq-a01-ccu.hl7",  # admitted to the CCU at 09:25
    SAMPLES / "adt-a02-transfer.hl7",  # to the cardiology ward at 10:55
    SAMPLES / "adt-seq-a02-to-rehab.hl7",  # to cardiac rehabilitation on the 28th at 09:00
    SAMPLES / "adt-seq-a03-from-rehab.hl7",  # discharged on 2 December at 14:30
]


def stays(encounter: dict[str, Any]) -> list[tuple[str | None, str, str | None, str | None]]:
    return [
        (
            stay["location"].get("display"),
            stay["status"],
            stay.get("period", {}).get("start"),
            stay.get("period", {}).get("end"),
        )
        for stay in encounter["location"]
    ]


async def test_successive_transfers_keep_the_his_location_history(store: FhirStore) -> None:
    """A01, A02, A02, A03 through the destination: every ward the patient was in stays on the
    visit, each closed when the next began, the UWB stays kept beside them; the HIS resending
    every message (and an old transfer out of order) changes nothing."""
    destination = FhirDestination(store, config())
    raws = [path.read_bytes() for path in STAYS]
    encounter_id = ids(raws[0])["Encounter"]
    for number, raw in enumerate(raws[:2], start=1):
        assert isinstance(await destination.send(outbound(raw, number)), Delivered)
    visit = content(await store.read("Encounter", encounter_id))
    visit["location"] = [*visit["location"], uwb_stay("cathlab", "2026-11-25T10:20:00+08:00")]
    await store.update("Encounter", encounter_id, visit)  # the UWB feed's stay
    for number, raw in enumerate(raws[2:], start=3):
        assert isinstance(await destination.send(outbound(raw, number)), Delivered)
    encounter = content(await store.read("Encounter", encounter_id))
    for number, raw in enumerate([raws[1], *raws], start=10):  # resent, the old A02 first
        assert isinstance(await destination.send(outbound(raw, number)), Delivered)
    replayed = content(await store.read("Encounter", encounter_id))

    assert stays(encounter) == [
        ("心内科监护室", "completed", "2026-11-25T09:25:00+08:00", "2026-11-25T10:55:00+08:00"),
        ("心血管内科病区", "completed", "2026-11-25T10:55:00+08:00", "2026-11-28T09:00:00+08:00"),
        ("心脏康复病区", "completed", "2026-11-28T09:00:00+08:00", "2026-12-02T14:30:00+08:00"),
        (None, "completed", "2026-11-25T10:20:00+08:00", None),  # the UWB stay, kept
    ]
    assert replayed == encounter
