"""Cases the HIS opens: an ADT with the green channel Z-segment (ZGC) goes through the shipped
mapping into the real store (SQLite and PostgreSQL), and the pathway subscriber takes the
EpisodeOfCare it writes as the patient's case — one case per patient and center, whichever of
the ECG and the registration comes first, and the engine's facts survive the HIS rewriting the
whole resource."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.hl7v2 import parse_for_mapping
from engine.mapping import load_mapping
from fhir_store import FhirStore, parse_search
from pathways.shapes import arrival_mode_of, case_facts
from pathways.subscriber import PathwaySubscriber
from pathways.vocabulary import CENTER_SYSTEM, OBSERVATION_CATEGORY_SYSTEM, TIME_NODE_SYSTEM
from tests.pathways.conftest import CST

pytestmark = pytest.mark.anyio

Build = Callable[[], Awaitable[PathwaySubscriber]]
ROOT = Path(__file__).resolve().parents[2]
HL7V2 = ROOT / "mappings" / "hl7v2"
SAMPLES = ROOT / "mappings" / "tests" / "samples"
REGISTRATION = (SAMPLES / "adt-a04-chest-pain-utf8.hl7").read_bytes()  # ZGC|CP|XT2026112501|…|A|1


def _ecg() -> bytes:
    """The ECG network's STEMI report, for the patient the registration names."""
    (pid,) = [s for s in REGISTRATION.split(b"\r") if s.startswith(b"PID|")]
    ecg = (SAMPLES / "ecg-oru-stemi-utf8.hl7").read_bytes().split(b"\r")
    return b"\r".join(pid if s.startswith(b"PID|") else s for s in ecg)


def _update() -> bytes:
    """A08 for the same visit: the HIS sends the whole registration (and ZGC) again."""
    return REGISTRATION.replace(
        b"ADT^A04^ADT_A01|ADT-A04-CP-01", b"ADT^A08^ADT_A01|ADT-A08-CP-01"
    ).replace(b"EVN|A04", b"EVN|A08")


@pytest.fixture
async def store(database: AsyncEngine) -> AsyncIterator[FhirStore]:
    """The store as the channels' FHIR destination writes it: messages arrive in any order."""
    fhir = FhirStore(database, timezone=CST, check_references=False)
    try:
        yield fhir
    finally:
        await fhir.aclose()


async def send(store: FhirStore, mapping: str, raw: bytes) -> None:
    bundle = load_mapping(HL7V2 / mapping).apply(parse_for_mapping(raw, "utf-8"))
    response = await store.transaction(bundle)
    assert all(e["response"]["status"].startswith(("200", "201")) for e in response["entry"])


async def arrive(store: FhirStore, pathways: PathwaySubscriber, mapping: str, raw: bytes) -> None:
    """A message through its mapping into the store, then the subscriber's turn."""
    await send(store, mapping, raw)
    await pathways.catch_up()


async def chest_pain_cases(store: FhirStore) -> dict[str, dict[str, Any]]:
    page = await store.search(parse_search("EpisodeOfCare", [("_count", "50")], strict=True))
    return {c["id"]: c for c in map(json.loads, page.contents)}


async def nodes(store: FhirStore, case_id: str) -> dict[str, str]:
    page = await store.search(
        parse_search(
            "Observation",
            [
                ("case", f"EpisodeOfCare/{case_id}"),
                ("category", f"{OBSERVATION_CATEGORY_SYSTEM}|time-node"),
                ("status", "final,amended"),
                ("_count", "100"),
            ],
            strict=True,
        )
    )
    found = [json.loads(c) for c in page.contents]
    return {
        next(c["code"] for c in o["code"]["coding"] if c["system"] == TIME_NODE_SYSTEM): o[
            "valueDateTime"
        ]
        for o in found
    }


async def test_a_registration_before_the_ecg_is_the_case_and_no_second_one_opens(
    store: FhirStore, subscriber: Build
) -> None:
    pathways = await subscriber()
    await arrive(store, pathways, "adt.yaml", REGISTRATION)
    await arrive(store, pathways, "oru_ecg.yaml", _ecg())

    (case,) = (await chest_pain_cases(store)).values()
    assert case["status"] == "active"
    assert case["identifier"][0]["value"] == "XT2026112501"
    assert arrival_mode_of(case) == "ems"  # ZGC-5 = 1
    assert case_facts(case)["arrival_mode"] == ("ems", f"EpisodeOfCare/{case['id']}")
    assert await nodes(store, case["id"]) == {
        "door": "2026-11-25T08:12:00+08:00",
        "first_ecg": "2026-11-25T08:03:00+08:00",
        "ecg_diagnosis": "2026-11-25T08:12:00+08:00",
    }


async def test_a_registration_after_the_engine_opened_a_case_takes_it_over(
    store: FhirStore, subscriber: Build
) -> None:
    pathways = await subscriber()
    # the STEMI ECG opens a case (activation rule) before the HIS registers the patient
    await arrive(store, pathways, "oru_ecg.yaml", _ecg())
    (own,) = (await chest_pain_cases(store)).values()
    await pathways.cases.set_manual_fact(
        own, "give_up_treatment", True, who="医生乙", why="family declined PCI"
    )
    await pathways.cases.enter_node(
        own, "symptom_onset", _at("07:30:00"), who="护士甲", why="patient says", correction=False
    )

    await arrive(store, pathways, "adt.yaml", REGISTRATION)

    cases = await chest_pain_cases(store)
    assert cases[own["id"]]["status"] == "cancelled"  # superseded: counted nowhere
    (his,) = [c for c in cases.values() if c["status"] == "active"]
    assert his["id"] != own["id"]
    assert case_facts(his)["give_up_treatment"] == (True, "manual")  # staff facts carried over
    assert await nodes(store, his["id"]) == {
        "symptom_onset": "2026-11-25T07:30:00+08:00",  # and staff times
        "door": "2026-11-25T08:12:00+08:00",
        "first_ecg": "2026-11-25T08:03:00+08:00",
        "ecg_diagnosis": "2026-11-25T08:12:00+08:00",
    }


async def test_the_his_rewriting_its_case_keeps_what_the_engine_and_staff_set(
    store: FhirStore, subscriber: Build
) -> None:
    pathways = await subscriber()
    await arrive(store, pathways, "adt.yaml", REGISTRATION)
    (case,) = (await chest_pain_cases(store)).values()
    patient = case["patient"]["reference"]
    await store.update(
        "Condition",
        "dx-stemi",
        {
            "resourceType": "Condition",
            "id": "dx-stemi",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I21.0"}]},
            "subject": {"reference": patient},
            "recordedDate": "2026-11-25T08:20:00+08:00",
        },
    )
    await pathways.catch_up()
    case = (await chest_pain_cases(store))[case["id"]]
    await pathways.cases.set_manual_fact(case, "onset_approximate", True, who="医生乙", why=None)
    await pathways.catch_up()

    await send(store, "adt.yaml", _update())  # the whole EpisodeOfCare again, without our facts
    rewritten = (await chest_pain_cases(store))[case["id"]]
    assert "diagnosis" not in case_facts(rewritten)
    await pathways.catch_up()

    case = (await chest_pain_cases(store))[case["id"]]
    facts = case_facts(case)
    assert facts["diagnosis"] == ("STEMI", "Condition/dx-stemi")
    assert facts["onset_approximate"] == (True, "manual")
    assert arrival_mode_of(case) == "ems"
    # a replay of the subscriber's events writes nothing more
    version = case["meta"]["versionId"]
    await pathways.catch_up()
    assert (await chest_pain_cases(store))[case["id"]]["meta"]["versionId"] == version


def _at(clock: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(f"2026-11-25T{clock}+08:00")


def _event(event: str, control_id: str) -> bytes:
    return REGISTRATION.replace(
        b"ADT^A04^ADT_A01|ADT-A04-CP-01", f"ADT^{event}^ADT_A01|{control_id}".encode()
    ).replace(b"EVN|A04", f"EVN|{event}".encode())


# the discharge at 16:30: PV1-45, the field after the admit time (PV1-44)
DISCHARGED_AT = b"20261125081200+0800|20261125163000+0800\rZGC"


async def deliver(destination: Any, raw: bytes, message_id: int) -> None:
    """The message as the channel's FHIR destination writes it: merge mode, If-Match."""
    from engine.connectors import Delivered, Outbound

    bundle = load_mapping(HL7V2 / "adt.yaml").apply(parse_for_mapping(raw, "utf-8"))
    payload = json.dumps(bundle, ensure_ascii=False).encode()
    outbound = Outbound(message_id, "his-adt", "fhir", payload, "application/fhir+json", 1)
    assert isinstance(await destination.send(outbound), Delivered)


async def test_a_late_a08_does_not_open_a_case_the_engine_finished_and_an_a13_does(
    store: FhirStore, subscriber: Build
) -> None:
    """The engine finishes the case on the A03's discharge (closes_on); an A08 after it keeps
    the case finished with its end at every moment (merge `hold`), and an A13 cancelling the
    discharge opens it again through the engine (the discharge node goes)."""
    from adapters.fhir import FhirDestination, FhirDestinationConfig

    destination = FhirDestination(store, FhirDestinationConfig.model_validate({"kind": "fhir"}))
    pathways = await subscriber()
    await deliver(destination, REGISTRATION, 1)
    await pathways.catch_up()
    a03 = _event("A03", "ADT-A03-CP-01").replace(b"20261125081200+0800\rZGC", DISCHARGED_AT)
    await deliver(destination, a03, 2)
    await pathways.catch_up()
    (case,) = (await chest_pain_cases(store)).values()
    finished = case["status"], case["period"].get("end")

    # a late A08: the whole visit again (PV1-45 too), the case as registered (active, no end)
    await deliver(destination, _update().replace(b"20261125081200+0800\rZGC", DISCHARGED_AT), 3)
    as_written = (await chest_pain_cases(store))[case["id"]]
    await pathways.catch_up()
    after_a08 = (await chest_pain_cases(store))[case["id"]]
    a13 = _event("A13", "ADT-A13-CP-01").replace(b"20261125081200+0800\rZGC", DISCHARGED_AT)
    await deliver(destination, a13, 4)
    await pathways.catch_up()
    after_a13 = (await chest_pain_cases(store))[case["id"]]

    assert finished == ("finished", "2026-11-25T16:30:00+08:00")
    assert (as_written["status"], as_written["period"].get("end")) == finished
    assert (after_a08["status"], after_a08["period"].get("end")) == finished
    assert await nodes(store, case["id"]) != {}  # the case's timeline is still there
    assert (after_a13["status"], after_a13["period"].get("end")) == ("active", None)


async def test_a_finished_case_another_system_wrote_keeps_its_period_and_takes_no_later_data(
    store: FhirStore, subscriber: Build
) -> None:
    """An earlier episode imported from the old system (finished in 2022, no discharge node of
    ours): adopting it neither reopens it nor captures this visit's times into it."""
    pathways = await subscriber()
    await arrive(store, pathways, "adt.yaml", REGISTRATION)
    (current,) = (await chest_pain_cases(store)).values()
    old = {
        "resourceType": "EpisodeOfCare",
        "id": "cp-2022",
        "status": "finished",
        "type": [{"coding": [{"system": CENTER_SYSTEM, "code": "chest-pain"}]}],
        "patient": current["patient"],
        "period": {"start": "2022-01-10T20:00:00+08:00", "end": "2022-01-15T09:00:00+08:00"},
    }
    await store.update("EpisodeOfCare", "cp-2022", old)
    await pathways.catch_up()
    await arrive(store, pathways, "oru_ecg.yaml", _ecg())

    cases = await chest_pain_cases(store)
    assert cases["cp-2022"]["status"] == "finished"
    assert cases["cp-2022"]["period"] == old["period"]
    assert await nodes(store, "cp-2022") == {}
    assert set(await nodes(store, current["id"])) == {"door", "first_ecg", "ecg_diagnosis"}
