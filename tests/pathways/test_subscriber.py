"""The pathway subscriber against a real store (SQLite and PostgreSQL): resources in, exactly
the expected cases and time nodes out, through replays, restarts and retractions, and readable
with plain FHIR searches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from engine.connectors import Inbound, Receipt
from engine.testing import wait_until
from fhir_store import ChangeFeed, FhirStore, parse_search
from pathways.indicator_loader import indicator_definitions
from pathways.nodes import Nodes
from pathways.records import Records
from pathways.subscriber import PathwaySubscriber
from pathways.timeline import CaseTimeline
from pathways.vocabulary import (
    ARRIVAL_MODE_EXTENSION,
    CASE_EXTENSION,
    CASE_LINK_EXTENSION,
    OBSERVATION_CATEGORY_SYSTEM,
    TIME_NODE_SYSTEM,
)
from tests.pathways import resources as r
from tests.pathways.conftest import CST

pytestmark = pytest.mark.anyio

Build = Callable[[], Awaitable[PathwaySubscriber]]
CATEGORY = f"{OBSERVATION_CATEGORY_SYSTEM}|time-node"


async def put(store: FhirStore, *resources: dict[str, Any]) -> None:
    for resource in resources:
        await store.update(resource["resourceType"], resource["id"], resource)


async def search(store: FhirStore, kind: str, **params: str) -> list[dict[str, Any]]:
    pairs = [(k.replace("_", "-") if k != "_count" else k, v) for k, v in params.items()]
    page = await store.search(parse_search(kind, [*pairs, ("_count", "500")], strict=True))
    return [json.loads(c) for c in page.contents]


async def the_case(store: FhirStore) -> dict[str, Any]:
    (case,) = await search(store, "EpisodeOfCare")
    return case


async def nodes(store: FhirStore, case_id: str) -> dict[str, tuple[str, str, str]]:
    """node key -> (instant, status, rule) of the authoritative nodes, by plain FHIR search."""
    found = await search(store, "Observation", case=f"EpisodeOfCare/{case_id}", category=CATEGORY)
    return {
        o["code"]["coding"][0]["code"]: (
            o["valueDateTime"], o["status"], o["method"]["coding"][0]["code"]
        )
        for o in found
        if o["status"] in ("final", "amended")
    }  # fmt: skip


async def candidates(store: FhirStore, node: str) -> list[dict[str, Any]]:
    found = await search(store, "Observation", code=f"{TIME_NODE_SYSTEM}|{node}", category=CATEGORY)
    return [o for o in found if o["status"] in ("preliminary", "cancelled")]


async def rewind(database: Any) -> None:
    """The subscriber's cursor back to 0: every event comes again."""
    async with database.begin() as connection:
        await connection.execute(text("DELETE FROM fhir_change_cursor"))


async def stemi_walk_in(store: FhirStore) -> None:
    await put(store, r.patient(), r.ed_visit(), r.ecg(), r.ecg_report(), *r.troponin())


async def test_an_ecg_stemi_alert_opens_a_case_with_its_nodes(
    store: FhirStore, subscriber: Build
) -> None:
    await stemi_walk_in(store)
    await (await subscriber()).catch_up()
    case = await the_case(store)
    assert case["status"] == "active"
    assert case["period"]["start"] == "2026-11-25T08:03:00+08:00"  # the ECG's acquisition
    assert case["patient"] == {"reference": "Patient/p1"}
    assert await nodes(store, case["id"]) == {
        "door": ("2026-11-25T08:28:00+08:00", "final", "priority-first"),  # PV1-44, a proxy
        "first_ecg": ("2026-11-25T08:03:00+08:00", "final", "priority-first"),
        "ecg_diagnosis": ("2026-11-25T08:12:00+08:00", "final", "priority-first"),
        "troponin_draw": ("2026-11-25T08:40:00+08:00", "final", "priority-first"),  # Specimen
        "troponin_report": ("2026-11-25T09:05:00+08:00", "final", "priority-first"),
    }
    (door,) = [o for o in await search(store, "Observation", code=f"{TIME_NODE_SYSTEM}|door")
               if o["status"] == "final"]  # fmt: skip
    assert door["interpretation"][0]["coding"][0]["code"] == "proxy"
    assert door["effectiveDateTime"] == door["valueDateTime"]
    assert door["encounter"] == {"reference": "Encounter/v1"}
    (candidate,) = await candidates(store, "door")
    assert candidate["derivedFrom"] == [{"reference": "Encounter/v1"}]
    assert candidate["method"]["coding"][0]["code"] == "hl7v2"
    assert door["derivedFrom"] == [{"reference": f"Observation/{candidate['id']}"}]
    # every node write has its Provenance, aimed at the version written
    (provenance,) = await search(store, "Provenance", target=f"Observation/{door['id']}")
    assert provenance["target"] == [{"reference": f"Observation/{door['id']}/_history/1"}]
    assert provenance["activity"]["coding"][0]["code"] == "derive"
    # and the code systems are in the store for front ends
    codes = await store.read("CodeSystem", "time-node")
    assert {"code": "door", "display": "到达本院大门"}.items() <= codes["concept"][10].items()


async def test_replayed_events_change_nothing(
    store: FhirStore, subscriber: Build, database: Any
) -> None:
    await stemi_walk_in(store)
    first = await subscriber()
    await first.catch_up()
    before = await search(store, "Observation", category=CATEGORY)
    provenances = len(await search(store, "Provenance"))
    # the cursor goes back to 0: every event comes again, as after a crash before the commit
    await rewind(database)
    second = await subscriber()
    assert await second.catch_up() > 0
    after = await search(store, "Observation", category=CATEGORY)
    assert sorted((o["id"], o["meta"]["versionId"]) for o in after) == sorted(
        (o["id"], o["meta"]["versionId"]) for o in before
    )
    assert len(await search(store, "Provenance")) == provenances
    assert len(await search(store, "EpisodeOfCare")) == 1


async def test_a_restart_midway_loses_and_duplicates_nothing(
    store: FhirStore, subscriber: Build, database: Any
) -> None:
    await put(store, r.patient(), r.ed_visit(), r.ecg())
    first = await subscriber()
    await first.catch_up()
    await first.aclose()
    await put(store, r.ecg_report(), *r.troponin())  # while the engine is down
    await (await subscriber()).catch_up()
    case = await the_case(store)
    assert set(await nodes(store, case["id"])) == {
        "door", "first_ecg", "ecg_diagnosis", "troponin_draw", "troponin_report"
    }  # fmt: skip
    assert len(await candidates(store, "troponin_draw")) == 2  # Specimen, DiagnosticReport
    feed = ChangeFeed(database)
    assert await feed.position("pathways") == await feed.latest()


async def test_a_withdrawn_source_is_retracted_and_the_node_re_resolved(
    store: FhirStore, subscriber: Build
) -> None:
    await stemi_walk_in(store)
    await put(store, *r.troponin(2, collected="2026-11-25T10:00:00+08:00",
                                 reported="2026-11-25T10:30:00+08:00"))  # fmt: skip
    engine = await subscriber()
    await engine.catch_up()
    case = await the_case(store)
    assert (await nodes(store, case["id"]))["troponin_report"][0] == "2026-11-25T09:05:00+08:00"
    # the first report is withdrawn (OBX-11 W → entered-in-error): the second one is the node
    first_report = r.troponin()[2] | {"status": "entered-in-error"}
    await put(store, first_report)
    await engine.catch_up()
    assert (await nodes(store, case["id"]))["troponin_report"][0] == "2026-11-25T10:30:00+08:00"
    statuses = sorted(c["status"] for c in await candidates(store, "troponin_report"))
    assert statuses == ["cancelled", "preliminary"]  # retracted, not deleted
    # the ECG report is deleted: no candidate is left, so no ecg_diagnosis node
    await store.delete("DiagnosticReport", "ecgr1")
    await engine.catch_up()
    assert "ecg_diagnosis" not in await nodes(store, case["id"])


async def test_uwb_outranks_his_and_a_far_apart_pair_is_flagged(
    store: FhirStore, subscriber: Build
) -> None:
    await put(store, r.patient(), r.uwb_gate(entered="2026-11-25T08:21:30+08:00"), r.ecg())
    await (await subscriber()).catch_up()
    case = await the_case(store)
    door = (await nodes(store, case["id"]))["door"]
    assert door[0] == "2026-11-25T08:21:30+08:00"  # the gate, not registration at 08:28
    (node,) = [o for o in await search(store, "Observation", code=f"{TIME_NODE_SYSTEM}|door")
               if o["status"] == "final"]  # fmt: skip
    assert [i["coding"][0]["code"] for i in node["interpretation"]] == ["conflict"]  # 6.5 min
    assert len(await candidates(store, "door")) == 2


async def test_an_ambulance_leg_makes_it_an_ems_case_with_the_ambulance_door(
    store: FhirStore, subscriber: Build
) -> None:
    await put(store, r.patient(), r.ed_visit(), r.ecg(), r.ambulance_leg())
    await (await subscriber()).catch_up()
    case = await the_case(store)
    assert {"url": ARRIVAL_MODE_EXTENSION, "valueCode": "ems"} in case["extension"]
    found = await nodes(store, case["id"])
    assert found["door"][0] == "2026-11-25T08:20:00+08:00"  # the ambulance arrived
    assert found["first_medical_contact"][0] == "2026-11-25T07:50:00+08:00"


async def test_facts_come_from_conditions_and_own_writes_are_not_sources(
    store: FhirStore, subscriber: Build
) -> None:
    await put(store, r.patient(), r.ed_visit(), r.diagnosis())
    engine = await subscriber()
    await engine.catch_up()
    case = await the_case(store)  # the ACS diagnosis opened it
    facts = [e for e in case["extension"] if e["url"].endswith("case-fact")]
    assert facts[0]["extension"][:2] == [
        {"url": "name", "valueCode": "diagnosis"}, {"url": "value", "valueCode": "STEMI"}
    ]  # fmt: skip
    assert (await nodes(store, case["id"]))["initial_diagnosis"][0] == "2026-11-25T08:30:00+08:00"
    # time nodes carry the case link the `case` search parameter reads
    node = (await search(store, "Observation", case=f"EpisodeOfCare/{case['id']}"))[0]
    assert {
        "url": CASE_EXTENSION,
        "valueReference": {"reference": f"EpisodeOfCare/{case['id']}"},
    } in node["extension"]
    assert await engine.catch_up() == 0  # nothing it wrote came back as work


async def test_hooks_get_the_case_timeline_and_a_discharge_closes_the_case(
    store: FhirStore, database: Any, pathways: Any
) -> None:
    seen: list[CaseTimeline] = []

    async def hook(timeline: CaseTimeline) -> None:
        seen.append(timeline)

    engine = PathwaySubscriber(
        database, name="pathways", timezone=CST, pathways=pathways, hooks=[hook]
    )
    await engine.start()
    try:
        await put(store, r.patient(), r.ed_visit(), r.ecg(), r.ambulance_leg())
        await engine.catch_up()
        last = seen[-1]
        assert (last.center, last.patient_id, last.arrival_mode) == ("chest_pain", "p1", "ems")
        assert last.nodes["door"] == datetime(2026, 11, 25, 8, 20, tzinfo=CST)
        discharged = r.ed_visit(status="finished")
        discharged["period"]["end"] = "2026-11-25T15:00:00+08:00"
        await put(store, discharged)
        await engine.catch_up()
        case = await the_case(store)
        assert case["status"] == "finished"
        assert case["period"]["end"] == "2026-11-25T15:00:00+08:00"
        assert seen[-1].nodes["discharge"] == datetime(2026, 11, 25, 15, tzinfo=CST)
        await put(store, r.ed_visit())  # ADT A13 cancels the discharge: open again
        await engine.catch_up()
        case = await the_case(store)
        assert (case["status"], "end" in case["period"]) == ("active", False)
        assert "discharge" not in seen[-1].nodes
    finally:
        await engine.aclose()


async def test_a_ward_stay_of_the_case_after_the_ed_discharge_moves_the_discharge(
    store: FhirStore, subscriber: Build
) -> None:
    """The ED visit's end closes the case; the inpatient stay the HIS linked to the case, which
    ends days later, is the case's discharge (select: last), whenever it arrives."""
    discharged = r.ed_visit(status="finished")
    discharged["period"]["end"] = "2026-11-25T11:40:00+08:00"
    await put(store, r.patient(), discharged, r.ecg())
    engine = await subscriber()
    await engine.catch_up()
    case = await the_case(store)
    assert (case["status"], case["period"]["end"]) == ("finished", "2026-11-25T11:40:00+08:00")
    ward = r.ed_visit(vid="w1", status="finished", start="2026-11-25T11:40:00+08:00")
    ward["class"]["code"] = "IMP"
    ward["period"]["end"] = "2026-12-02T09:30:00+08:00"
    ward["episodeOfCare"] = [{"reference": f"EpisodeOfCare/{case['id']}"}]
    await put(store, ward)
    await engine.catch_up()
    case = await the_case(store)
    assert (case["status"], case["period"]["end"]) == ("finished", "2026-12-02T09:30:00+08:00")
    assert (await nodes(store, case["id"]))["discharge"][0] == "2026-12-02T09:30:00+08:00"


async def test_a_walk_in_first_medical_contact_is_the_registration_at_triage_a_proxy(
    store: FhirStore, subscriber: Build
) -> None:
    """self arrivals: FMC is triage (time-nodes.md); the ED registration stands in, flagged
    proxy, only once the case is known to be a walk-in (the test above: unknown, no FMC)."""
    admitted = {"admitSource": {"coding": [{"code": "self"}]}}
    await put(store, r.patient(), r.ed_visit(hospitalization=admitted),
              r.ecg(acquired="2026-11-25T08:31:00+08:00"))  # fmt: skip
    await (await subscriber()).catch_up()
    case = await the_case(store)
    found = await nodes(store, case["id"])
    assert found["first_medical_contact"][0] == "2026-11-25T08:28:00+08:00"
    assert found["first_ecg"][0] == "2026-11-25T08:31:00+08:00"  # at or after FMC (R7)
    (fmc,) = [o for o in await search(
        store, "Observation", code=f"{TIME_NODE_SYSTEM}|first_medical_contact"
    ) if o["status"] == "final"]  # fmt: skip
    assert fmc["interpretation"][0]["coding"][0]["code"] == "proxy"


def discharge_diagnosis(cid: str, recorded: str, encounter: str | None = None) -> dict[str, Any]:
    """A confirmed STEMI diagnosis, as an ADT A03 carries it (DG1-6 F)."""
    condition = {
        "resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I21.1"}]},
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "confirmed"}]},
        "recordedDate": recorded,
    }  # fmt: skip
    if encounter is not None:
        condition["encounter"] = {"reference": encounter}
    return condition


async def test_a_discharge_diagnosis_after_the_discharge_completes_the_finished_case(
    store: FhirStore, subscriber: Build
) -> None:
    """The A03 finishes the case before its diagnosis arrives: the diagnosis (recorded within
    the case, or on the case's encounter) is the case's final diagnosis, not a new case; one
    recorded after the case ended, on no encounter of it, is a new episode."""
    discharged = r.ed_visit(status="finished")
    discharged["period"]["end"] = "2026-11-25T15:00:00+08:00"
    await put(store, r.patient(), r.ecg(vid=None), discharged)
    engine = await subscriber()
    await engine.catch_up()
    case = await the_case(store)
    assert case["status"] == "finished"
    await put(store, discharge_diagnosis("dx1", "2026-11-25T14:30:00+08:00"))
    await engine.catch_up()
    case = await the_case(store)  # still the only case
    assert case["status"] == "finished"
    assert (await nodes(store, case["id"]))["final_diagnosis"][0] == "2026-11-25T14:30:00+08:00"
    facts = [e["extension"] for e in case["extension"] if e["url"].endswith("case-fact")]
    assert ["diagnosis", "STEMI"] in [[f[0]["valueCode"], f[1].get("valueCode")] for f in facts]

    linked = r.ed_visit(vid="v2", status="finished")  # the HIS linked this visit to the case
    linked["episodeOfCare"] = [{"reference": f"EpisodeOfCare/{case['id']}"}]
    late = discharge_diagnosis("dx2", "2026-11-25T16:00:00+08:00", encounter="Encounter/v2")
    await put(store, linked, late)
    await engine.catch_up()
    assert [c["id"] for c in await search(store, "EpisodeOfCare")] == [case["id"]]
    found = await nodes(store, case["id"])
    assert found["final_diagnosis"][0] == "2026-11-25T16:00:00+08:00"  # select: last

    await put(store, discharge_diagnosis("dx3", "2026-12-20T09:00:00+08:00"))  # weeks later
    await engine.catch_up()
    cases = await search(store, "EpisodeOfCare")
    assert sorted(c["status"] for c in cases) == ["active", "finished"]


async def test_a_corrected_or_withdrawn_diagnosis_changes_the_fact(
    store: FhirStore, subscriber: Build
) -> None:
    icd = "http://hl7.org/fhir/sid/icd-10"
    condition = {
        "resourceType": "Condition", "id": "dx1", "subject": {"reference": "Patient/p1"},
        "code": {"coding": [{"system": icd, "code": "I21.4"}]},
    }  # fmt: skip
    await put(store, r.patient(), r.ecg(vid=None), condition)
    engine = await subscriber()
    await engine.catch_up()

    async def diagnosis() -> Any:
        case = await the_case(store)
        facts = [
            e["extension"] for e in case.get("extension", []) if e["url"].endswith("case-fact")
        ]
        return [f[1]["valueCode"] for f in facts if f[0]["valueCode"] == "diagnosis"]

    assert await diagnosis() == ["NSTEMI"]
    condition["code"]["coding"][0]["code"] = "R07.4"  # recoded: no ACS diagnosis any more
    await put(store, condition)
    await engine.catch_up()
    assert await diagnosis() == []
    condition["code"]["coding"][0]["code"] = "I21.0"
    await put(store, condition)
    await engine.catch_up()
    assert await diagnosis() == ["STEMI"]
    await put(store, condition | {"verificationStatus": {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
        "code": "entered-in-error"}]}})  # fmt: skip
    await engine.catch_up()
    assert await diagnosis() == []  # entered in error: withdrawn
    await put(store, condition)
    await engine.catch_up()
    assert await diagnosis() == ["STEMI"]
    await store.delete("Condition", "dx1")
    await engine.catch_up()
    assert await diagnosis() == []


PATHWAY_EVENT = "https://greenchannel.example.org/fhir/CodeSystem/pathway-event"
PROCEDURE_EVENT = "https://greenchannel.example.org/fhir/CodeSystem/procedure-event"


async def test_cath_lab_and_emar_resources_posted_as_fhir_become_nodes(
    store: FhirStore, subscriber: Build
) -> None:
    subject = {"reference": "Patient/p1"}
    aspirin = {
        "resourceType": "MedicationAdministration", "id": "mar1", "status": "completed",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.whocc.no/atc",
                                                  "code": "B01AC06"}]},
        "subject": subject, "effectiveDateTime": "2026-11-25T08:15:00+08:00",
    }  # fmt: skip
    page = {
        "resourceType": "Communication", "id": "call1", "status": "completed", "subject": subject,
        "category": [{"coding": [{"system": PATHWAY_EVENT, "code": "cath-lab-activation"}]}],
        "sent": "2026-11-25T08:20:00+08:00",
    }  # fmt: skip
    wire = {
        "resourceType": "Procedure", "id": "pci1", "status": "completed", "subject": subject,
        "code": {"coding": [{"system": PROCEDURE_EVENT, "code": "wire-crossing"}]},
        "performedDateTime": "2026-11-25T09:10:05+08:00",
    }  # fmt: skip
    await put(store, r.patient(), r.ecg(vid=None), aspirin, page, wire)
    await (await subscriber()).catch_up()
    case = await the_case(store)
    found = {k: v[0] for k, v in (await nodes(store, case["id"])).items()}
    assert found["aspirin_given"] == "2026-11-25T08:15:00+08:00"
    assert found["cath_lab_activation_start"] == "2026-11-25T08:20:00+08:00"
    assert found["wire_crossing"] == "2026-11-25T09:10:05+08:00"


async def test_a_stroke_ct_order_and_a_trauma_activation_open_their_centers(
    store: FhirStore, subscriber: Build
) -> None:
    subject = {"reference": "Patient/p1"}
    ct_order = {
        "resourceType": "ServiceRequest", "id": "ct1", "status": "active", "intent": "order",
        "code": {"coding": [{"system": "http://loinc.org", "code": "30799-1"}]},
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I63.9"}]}],
        "subject": subject, "authoredOn": "2026-11-25T09:01:00+08:00",
    }  # fmt: skip
    team = {
        "resourceType": "Task", "id": "team1", "status": "requested", "intent": "order",
        "code": {"coding": [{"system": PATHWAY_EVENT, "code": "trauma-team-activation"}]},
        "for": subject, "authoredOn": "2026-11-25T09:30:00+08:00",
    }  # fmt: skip
    await put(store, r.patient(), ct_order, team)
    await (await subscriber()).catch_up()
    cases = {c["type"][0]["coding"][0]["code"]: c for c in await search(store, "EpisodeOfCare")}
    assert set(cases) == {"stroke", "trauma"}
    stroke = await nodes(store, cases["stroke"]["id"])
    assert stroke["ct_notified"][0] == "2026-11-25T09:01:00+08:00"
    trauma = await nodes(store, cases["trauma"]["id"])
    assert trauma["trauma_team_activated"][0] == "2026-11-25T09:30:00+08:00"
    assert "ct_notified" not in trauma  # not a trauma node


async def test_a_corrected_specimen_collection_time_re_derives_the_draw(
    store: FhirStore, subscriber: Build
) -> None:
    await stemi_walk_in(store)
    engine = await subscriber()
    await engine.catch_up()
    case = await the_case(store)
    specimen = r.troponin()[0]
    specimen["collection"]["collectedDateTime"] = "2026-11-25T08:35:00+08:00"  # LIS fixed it
    await put(store, specimen)
    await engine.catch_up()
    assert (await nodes(store, case["id"]))["troponin_draw"][0] == "2026-11-25T08:35:00+08:00"


async def test_a_candidate_written_elsewhere_is_resolved_by_the_subscriber(
    store: FhirStore, subscriber: Build, pathways: Any
) -> None:
    await put(store, r.patient(), r.ed_visit(), r.ecg())
    engine = await subscriber()
    await engine.catch_up()
    case = await the_case(store)
    # another engine node's API wrote a correction but stopped before resolving the node
    other = Nodes(Records(store, CST), pathways)
    fixed = datetime(2026, 11, 25, 8, 24, 10, tzinfo=CST)
    await other.manual(case, "door", fixed, who="李质控", why="录像核实", correction=True)
    assert (await nodes(store, case["id"]))["door"][1] == "final"
    await engine.catch_up()
    assert (await nodes(store, case["id"]))["door"] == (
        "2026-11-25T08:24:10+08:00", "amended", "correction"
    )  # fmt: skip


async def test_a_patient_merge_hands_the_case_to_the_surviving_record(
    store: FhirStore, subscriber: Build
) -> None:
    await put(store, r.patient(), r.ed_visit(), r.ecg())
    engine = await subscriber()
    await engine.catch_up()
    # ADT A40: p2 survives, p1 is retired and points at it
    retired = r.patient() | {"active": False, "link": [
        {"other": {"reference": "Patient/p2"}, "type": "replaced-by"}]}  # fmt: skip
    await put(store, r.patient("p2"), retired)
    await engine.catch_up()
    case = await the_case(store)
    assert case["patient"] == {"reference": "Patient/p2"}
    # what comes for the survivor now feeds the same case
    await put(store, *r.troponin(pid="p2"))
    await engine.catch_up()
    assert len(await search(store, "EpisodeOfCare")) == 1
    assert "troponin_report" in await nodes(store, case["id"])


async def test_the_clocks_run_in_the_subscriber_from_resolved_nodes_and_case_changes(
    store: FhirStore, database: Any, pathways: Any
) -> None:
    """The ECG is acquired but not read: the ECG-to-diagnosis clock (10 min) is long overdue,
    so its alerts are raised; the report resolves them; the discharge closes the case."""
    sent: list[dict[str, Any]] = []

    async def accept(channel: str, inbound: Inbound) -> Receipt:
        assert channel == "pathway-alerts"
        sent.append(json.loads(inbound.raw))
        return Receipt(message_id=len(sent), duplicate=False)

    subscriber = PathwaySubscriber(
        database, name="pathways", timezone=CST, pathways=pathways, accept=accept
    )
    assert subscriber.scheduler is not None
    await subscriber.start()
    clocks = asyncio.create_task(subscriber.scheduler.run())

    def events(rule: str, event: str) -> list[dict[str, Any]]:
        return [m for m in sent if m["rule"]["id"] == rule and m["event"] == event]

    async def seen(rule: str, event: str, count: int) -> None:
        async def enough() -> bool:
            return len(events(rule, event)) >= count

        await wait_until(enough, timeout_s=10)

    try:
        await put(store, r.patient(), r.ed_visit(), r.ecg())
        await subscriber.catch_up()
        await seen("cpc.ecg2dx", "raised", 2)
        case = await the_case(store)
        raised = events("cpc.ecg2dx", "raised")
        assert {m["step"]["name"] for m in raised} == {"warning", "limit"}
        assert raised[0]["case"]["id"] == case["id"]
        assert raised[0]["started_at"] == "2026-11-25T08:03:00+08:00"

        await put(store, r.ecg_report())
        await subscriber.catch_up()
        await seen("cpc.ecg2dx", "resolved", 2)
        assert {m["resolution"]["reason"] for m in events("cpc.ecg2dx", "resolved")} == {"end_node"}

        # the troponin clock starts at the draw; the discharge closes the case (and its clocks)
        await put(store, *r.troponin()[:2])
        await put(
            store,
            r.ed_visit(status="finished", period={"start": "2026-11-25T08:28:00+08:00",
                                                  "end": "2026-11-25T12:00:00+08:00"}),
        )  # fmt: skip
        await subscriber.catch_up()
        assert (await the_case(store))["status"] == "finished"
        await seen("cpc.trop_tat", "resolved", 2)
        assert {m["resolution"]["reason"] for m in events("cpc.trop_tat", "resolved")} == {
            "case_closed"
        }
        assert subscriber.scheduler.open_cases == 0
        assert len(events("cpc.ecg2dx", "raised")) == 2  # never raised twice
    finally:
        clocks.cancel()
        await subscriber.aclose()


def _stemi_condition() -> dict[str, Any]:
    return {
        "resourceType": "Condition", "id": "dx1",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I21.0"}]},
        "subject": {"reference": "Patient/p1"}, "recordedDate": "2026-11-25T08:15:00+08:00",
    }  # fmt: skip


async def intervals(store: FhirStore, case_id: str) -> dict[str, dict[str, Any]]:
    """indicator (standard) -> the interval Observation, by plain FHIR search."""
    found = await search(
        store, "Observation", case=f"EpisodeOfCare/{case_id}",
        category=f"{OBSERVATION_CATEGORY_SYSTEM}|interval",
    )  # fmt: skip
    return {f"{o['code']['coding'][0]['code']} ({o['method']['text']})": o for o in found}


async def test_the_case_intervals_follow_its_nodes_and_facts(
    store: FhirStore, subscriber: Build, database: Any
) -> None:
    await stemi_walk_in(store)
    first = await subscriber()
    await first.catch_up()
    case = await the_case(store)
    found = await intervals(store, case["id"])
    trop = found["cpc.trop_tat (standard cpc-recert)"]
    assert trop["valueQuantity"] == {
        "value": 1500, "unit": "s", "system": "http://unitsofmeasure.org", "code": "s"
    }  # fmt: skip
    assert trop["effectivePeriod"] == {
        "start": "2026-11-25T08:40:00+08:00",
        "end": "2026-11-25T09:05:00+08:00",
    }
    draw, report = [
        next(o["id"] for o in await search(store, "Observation", code=f"{TIME_NODE_SYSTEM}|{k}")
             if o["status"] == "final")
        for k in ("troponin_draw", "troponin_report")
    ]  # fmt: skip
    assert trop["derivedFrom"] == [
        {"reference": f"Observation/{draw}"},
        {"reference": f"Observation/{report}"},
    ]
    assert trop["interpretation"][0]["coding"][0]["code"] == "ok"
    assert "cpc.ecg2dx (standard cpc-recert)" not in found  # not STEMI (yet)
    # a walk-in has no first medical contact: the FMC interval is there, not computable
    fmc = found["cpc.fmc2ecg (standard cpc-recert)"]
    assert "valueQuantity" not in fmc and fmc["interpretation"][0]["coding"][0]["code"] == (
        "not_computable"
    )

    # a STEMI diagnosis brings the STEMI intervals; the report withdrawn takes the value away
    report_resource = r.troponin()[2]
    await put(store, _stemi_condition(), dict(report_resource, status="entered-in-error"))
    await first.catch_up()
    found = await intervals(store, case["id"])
    assert found["cpc.ecg2dx (standard cpc-recert)"]["valueQuantity"]["value"] == 540
    trop = found["cpc.trop_tat (standard cpc-recert)"]
    assert "valueQuantity" not in trop and "derivedFrom" not in trop
    assert trop["meta"]["versionId"] == "2"

    # a replay from the start writes no new version of any interval
    versions = {k: o["meta"]["versionId"] for k, o in found.items()}
    await rewind(database)
    await (await subscriber()).catch_up()
    assert {
        k: o["meta"]["versionId"] for k, o in (await intervals(store, case["id"])).items()
    } == versions

    # a case entered in error concerns no indicator: its intervals go
    current = await the_case(store)
    await put(
        store, {k: v for k, v in current.items() if k != "meta"} | {"status": "entered-in-error"}
    )
    await first.catch_up()
    assert await intervals(store, case["id"]) == {}


async def test_the_visits_of_a_case_the_engine_opened_point_to_it(
    store: FhirStore, subscriber: Build, database: Any
) -> None:
    """The ED visit of the walk-in STEMI and the ambulance leg link the case; a visit of last
    month and another patient's visit do not; replayed events write nothing more."""
    last_month = r.ed_visit("v0", start="2026-10-20T10:00:00+08:00") | {
        "status": "finished",
        "period": {"start": "2026-10-20T10:00:00+08:00", "end": "2026-10-20T16:00:00+08:00"},
    }
    other = r.ed_visit("v9", pid="p9")
    await put(store, r.patient(), r.patient("p9"), last_month, other, r.ambulance_leg())
    await stemi_walk_in(store)
    await (await subscriber()).catch_up()
    case = await the_case(store)
    link = [
        {
            "extension": [{"url": CASE_LINK_EXTENSION, "valueCode": "pathway-engine"}],
            "reference": f"EpisodeOfCare/{case['id']}",
        }
    ]
    for visit in ("v1", "amb1"):
        encounter = await store.read("Encounter", visit)
        assert encounter["episodeOfCare"] == link, visit
        (provenance,) = await search(store, "Provenance", target=f"Encounter/{visit}")
        assert provenance["entity"] == [
            {"role": "source", "what": {"reference": f"EpisodeOfCare/{case['id']}"}}
        ]
    for visit in ("v0", "v9"):
        assert "episodeOfCare" not in await store.read("Encounter", visit), visit
    found = await search(store, "Encounter", episode_of_care=f"EpisodeOfCare/{case['id']}")
    assert sorted(e["id"] for e in found) == ["amb1", "v1"]  # plain FHIR search finds them
    versions = (await store.read("Encounter", "v1"))["meta"]["versionId"]
    await rewind(database)
    await (await subscriber()).catch_up()
    assert (await store.read("Encounter", "v1"))["meta"]["versionId"] == versions


async def test_the_interval_writer_sees_an_edited_definition_without_a_restart(
    store: FhirStore, database: Any, pathways: Any, tmp_path: Path
) -> None:
    """The QC office adds a standard version while the engine runs: the next change of the
    case writes its intervals under the new version too (the loader the QC API reads too)."""
    folder = _copy_of_the_pathways(tmp_path)
    running = PathwaySubscriber(
        database, name="pathways", timezone=CST, pathways=pathways,
        indicators=indicator_definitions(folder),
    )  # fmt: skip
    await running.start()
    try:
        await stemi_walk_in(store)
        await running.catch_up()
        case = await the_case(store)
        assert "cpc.trop_tat (standard cpc-recert)" in await intervals(store, case["id"])
        _add_a_standard(folder)
        await put(store, _stemi_condition())
        await running.catch_up()
        found = await intervals(store, case["id"])
        assert "cpc.trop_tat (standard cpc-2027)" in found
        assert "cpc.trop_tat (standard cpc-recert)" in found
    finally:
        await running.aclose()


def _copy_of_the_pathways(tmp_path: Path) -> Path:
    folder = tmp_path / "pathways"
    shutil.copytree(Path(__file__).resolve().parents[2] / "config" / "pathways", folder)
    return folder


def _add_a_standard(folder: Path) -> None:
    text = (folder / "chest_pain" / "cpc-recert.yaml").read_text("utf-8")
    new = text.replace("standard: cpc-recert", "standard: cpc-2027")
    (folder / "chest_pain" / "cpc-2027.yaml").write_text(new, "utf-8")


async def test_an_edited_definition_rewrites_the_intervals_without_a_change_of_the_case(
    store: FhirStore, database: Any, pathways: Any, tmp_path: Path
) -> None:
    """The QC office adds a standard version while the engine runs and nothing happens to the
    case afterwards: the running subscriber sees the edit and writes the case's intervals under
    the new version within seconds."""
    folder = _copy_of_the_pathways(tmp_path)
    running = PathwaySubscriber(
        database, name="pathways", timezone=CST, pathways=pathways,
        indicators=indicator_definitions(folder), definitions_poll_s=0.2,
    )  # fmt: skip
    await stemi_walk_in(store)
    task = asyncio.create_task(running.run())
    try:

        async def written(standard: str) -> bool:
            case = await search(store, "EpisodeOfCare")
            return bool(case) and f"cpc.trop_tat (standard {standard})" in await intervals(
                store, case[0]["id"]
            )

        await wait_until(lambda: written("cpc-recert"), timeout_s=30)
        _add_a_standard(folder)
        await wait_until(lambda: written("cpc-2027"), timeout_s=30)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await running.aclose()
    case = await the_case(store)
    found = await intervals(store, case["id"])
    assert found["cpc.trop_tat (standard cpc-2027)"]["valueQuantity"]["value"] == 1500
    assert found["cpc.trop_tat (standard cpc-recert)"]["meta"]["versionId"] == "1"  # unchanged


async def test_case_reindex_rewrites_the_intervals_after_an_edit_made_while_stopped(
    store: FhirStore, subscriber: Build, database_url: str, tmp_path: Path
) -> None:
    """`greenchannel case reindex --center chest_pain`, a real subprocess in a folder whose
    config/pathways the QC office edited while no engine ran."""
    await stemi_walk_in(store)
    await (await subscriber()).catch_up()
    case = await the_case(store)
    before = await intervals(store, case["id"])
    site = tmp_path / "site"
    _add_a_standard(_copy_of_the_pathways(site / "config"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENCHANNEL_")}
    env["GREENCHANNEL_DATABASE_URL"] = database_url
    run = await asyncio.to_thread(
        subprocess.run,
        [str(Path(sys.executable).parent / "greenchannel"), "case", "reindex",
         "--center", "chest_pain"],
        capture_output=True, text=True, env=env, timeout=180, cwd=site,
    )  # fmt: skip
    after = await intervals(store, case["id"])

    assert run.returncode == 0, run.stderr
    assert "1 chest_pain case(s)" in run.stdout
    assert "cpc.trop_tat (standard cpc-2027)" not in before
    assert after["cpc.trop_tat (standard cpc-2027)"]["valueQuantity"]["value"] == 1500
    assert {k: o["meta"]["versionId"] for k, o in after.items() if k in before} == {
        k: o["meta"]["versionId"] for k, o in before.items()
    }  # only what changed was written


def fact_parts(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The case's facts by name: each its extension's parts (name, value, source) by url."""
    return {
        parts["name"]["valueCode"]: parts
        for e in case["extension"] if e["url"].endswith("case-fact")
        for parts in [{p["url"]: p for p in e["extension"]}]
    }  # fmt: skip


async def test_a_staff_fact_set_while_the_subscriber_works_is_not_undone(
    store: FhirStore, subscriber: Build
) -> None:
    await put(store, r.patient(), r.ed_visit(), r.diagnosis())
    engine = await subscriber()
    await engine.catch_up()
    # The diagnosis is corrected to NSTEMI; while the subscriber derives the new fact from the
    # case it read, a doctor records (through the API) that the family declined treatment.
    await put(store, r.diagnosis(icd10="I21.4"))
    derive = engine.cases.records.write
    staff = Records(store, CST)
    raced: list[str] = []

    async def doctor_first(resource: dict[str, Any], note: Any, **options: Any) -> Any:
        if resource["resourceType"] == "EpisodeOfCare" and not raced:
            raced.append(resource["id"])
            case = await staff.read(f"EpisodeOfCare/{resource['id']}")
            await engine.cases.set_manual_fact(
                case, "give_up_treatment", True, who="医生乙", why="family declined PCI"
            )
        return await derive(resource, note, **options)

    engine.cases.records.write = doctor_first  # type: ignore[method-assign]
    await engine.catch_up()
    case = await the_case(store)
    facts = fact_parts(case)
    assert raced
    assert facts["give_up_treatment"]["value"]["valueBoolean"] is True  # the doctor's entry
    assert facts["diagnosis"]["value"]["valueCode"] == "NSTEMI"  # and the corrected diagnosis


async def test_a_staff_fact_keeps_what_the_subscriber_derived_since_the_case_was_read(
    store: FhirStore, subscriber: Build
) -> None:
    await put(store, r.patient(), r.ed_visit(), r.diagnosis())
    engine = await subscriber()
    await engine.catch_up()
    on_screen = await the_case(store)  # the case as the doctor's screen read it
    await put(store, r.diagnosis(icd10="I21.4"))  # corrected to NSTEMI
    await engine.catch_up()
    await engine.cases.set_manual_fact(
        on_screen, "give_up_treatment", True, who="医生乙", why="family declined PCI"
    )
    case = await the_case(store)
    facts = fact_parts(case)
    assert facts["give_up_treatment"]["value"]["valueBoolean"] is True  # the doctor's entry
    assert facts["diagnosis"]["value"]["valueCode"] == "NSTEMI"  # and the subscriber's since


async def test_a_discharge_entered_while_the_case_changes_still_closes_it(
    store: FhirStore, subscriber: Build
) -> None:
    await stemi_walk_in(store)
    engine = await subscriber()
    await engine.catch_up()
    case = await the_case(store)
    derive = engine.cases.records.write
    raced: list[str] = []

    async def staff_first(resource: dict[str, Any], note: Any, **options: Any) -> Any:
        if resource["resourceType"] == "EpisodeOfCare" and resource.get("status") == "finished":
            if not raced:  # a doctor's entry lands between the close's read and its write
                raced.append(resource["id"])
                current = await Records(store, CST).read(f"EpisodeOfCare/{resource['id']}")
                await engine.cases.set_manual_fact(
                    current, "give_up_treatment", True, who="医生乙", why="family declined PCI"
                )
        return await derive(resource, note, **options)

    engine.cases.records.write = staff_first  # type: ignore[method-assign]
    discharged = datetime.fromisoformat("2026-11-25T12:00:00+08:00")
    await engine.cases.enter_node(
        case, "discharge", discharged, who="护士甲", why="left the ward", correction=False
    )
    closed = await the_case(store)
    assert raced
    assert closed["status"] == "finished"
    assert closed["period"]["end"] == "2026-11-25T12:00:00+08:00"
    fact_names = [
        p["valueCode"]
        for e in closed["extension"] if e["url"].endswith("case-fact")
        for p in e["extension"] if p["url"] == "name"
    ]  # fmt: skip
    assert "give_up_treatment" in fact_names  # the doctor's entry stays
