"""`/api/cases` over real HTTP (uvicorn) and a real store: manual activation, entries that never
overwrite an automatic capture, corrections that win with who/when/why in Provenance, facts,
the timeline with candidates and conflicts, and 4xx errors that say what is wrong."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from engine.testing import as_role
from fhir_store import FhirStore, build_router
from pathways.api import build_router as build_cases_router
from pathways.definitions import Pathways
from tests.net import serve_app
from tests.pathways import resources as r

pytestmark = pytest.mark.anyio
WHO = "王护士 (triage)"


@contextlib.asynccontextmanager
async def serve(store: FhirStore, pathways: Pathways) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI(dependencies=[Depends(as_role("clinician"))])  # as the token gate sets it
    app.include_router(build_router(store.database, store=store))
    app.include_router(build_cases_router(store.database, pathways=pathways))
    # Lifespan on, as the engine runs it: the cases router closes the store it built.
    async with (
        serve_app(app, lifespan="on") as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


@pytest.fixture
async def http(store: FhirStore, pathways: Pathways) -> AsyncIterator[httpx.AsyncClient]:
    for resource in (r.patient(), r.ed_visit()):
        await store.update(resource["resourceType"], resource["id"], resource)
    async with serve(store, pathways) as client:
        yield client


async def open_case(http: httpx.AsyncClient, **extra: Any) -> dict[str, Any]:
    body = {"patient": "Patient/p1", "center": "chest_pain", "arrival_mode": "self",
            "time": "2026-11-25T08:26:00+08:00", "who": WHO, "why": "胸痛30分钟"}  # fmt: skip
    body |= extra
    response = await http.post("/api/cases", json=body)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def node(timeline: dict[str, Any], key: str) -> dict[str, Any]:
    return next(n for n in timeline["nodes"] if n["key"] == key)


async def test_manual_activation_captures_what_the_record_already_holds(
    http: httpx.AsyncClient,
) -> None:
    case = await open_case(http)
    assert case["opened"] is True and case["status"] == "active"
    assert case["arrival_mode"] == "self" and case["start"] == "2026-11-25T08:26:00+08:00"
    again = await http.post("/api/cases", json={"patient": "Patient/p1", "center": "chest_pain",
                                                 "who": WHO})  # fmt: skip
    assert again.status_code == 200 and again.json()["id"] == case["id"]
    timeline = (await http.get(f"/api/cases/{case['id']}/timeline")).json()
    door = node(timeline, "door")
    assert door["time"] == "2026-11-25T08:28:00+08:00" and door["flags"] == ["proxy"]
    assert door["label"] == "到达本院大门"
    listed = await http.get("/api/cases", params={"center": "chest_pain", "status": "active"})
    assert [c["id"] for c in listed.json()] == [case["id"]]
    assert (await http.get("/api/cases", params={"center": "stroke"})).json() == []


async def test_an_entry_never_overwrites_a_capture_and_a_correction_wins(
    http: httpx.AsyncClient, store: FhirStore
) -> None:
    case = await open_case(http)
    url = f"/api/cases/{case['id']}/nodes/door"
    entry = {"time": "2026-11-25T08:15:00+08:00", "who": WHO, "why": "患者自述到院时间"}
    response = await http.post(url, json=entry)
    assert response.status_code == 200, response.text
    door = response.json()
    assert door["time"] == "2026-11-25T08:28:00+08:00"  # HIS registration outranks typing
    assert door["conflicts"] != []  # 13 min apart: flagged for review
    assert sorted(c["source"] for c in door["candidates"]) == ["hl7v2", "manual"]

    correction = {"time": "2026-11-25T08:16:40+08:00", "who": "李质控", "why": "监控录像核实",
                  "kind": "correction"}  # fmt: skip
    door = (await http.post(url, json=correction)).json()
    assert (door["time"], door["status"], door["rule"]) == (
        "2026-11-25T08:16:40+08:00", "amended", "correction"
    )  # fmt: skip
    fix = next(c for c in door["candidates"] if c["source"] == "correction")
    assert fix["note"] == "监控录像核实" and fix["performer"] == ["李质控"]
    provenance = await http.get("/fhir/Provenance", params={"target": f"Observation/{fix['id']}"})
    (record,) = [e["resource"] for e in provenance.json()["entry"]]
    assert record["agent"][0]["who"]["display"] == "李质控"
    assert record["reason"][0]["text"] == "监控录像核实"
    assert record["activity"]["coding"][0]["code"] == "correction"
    # front ends read the same timeline with plain FHIR search
    bundle = (await http.get("/fhir/Observation", params={
        "case": f"EpisodeOfCare/{case['id']}",
        "code": "https://greenchannel.example.org/fhir/CodeSystem/time-node|door",
        "status": "amended"})).json()  # fmt: skip
    assert [e["resource"]["valueDateTime"] for e in bundle["entry"]] == [
        "2026-11-25T08:16:40+08:00"
    ]


async def test_facts_and_the_arrival_mode_set_by_staff(http: httpx.AsyncClient) -> None:
    case = await open_case(http)
    response = await http.put(f"/api/cases/{case['id']}/facts/give_up_treatment",
                              json={"value": True, "who": WHO, "why": "家属拒绝手术"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["facts"]["give_up_treatment"] == {"value": True, "source": "manual"}
    # in-hospital onset: no door (R1)
    response = await http.put(f"/api/cases/{case['id']}/facts/arrival_mode",
                              json={"value": "in_hospital", "who": WHO})  # fmt: skip
    assert response.json()["arrival_mode"] == "in_hospital"
    timeline = (await http.get(f"/api/cases/{case['id']}/timeline")).json()
    assert node(timeline, "door")["time"] is None


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("post", "/api/cases", {"patient": "Patient/nobody", "center": "chest_pain", "who": WHO},
         422, "Patient/nobody is not in the FHIR store"),
        ("post", "/api/cases", {"patient": "p1", "center": "chest_pain", "who": WHO}, 422,
         "patient"),
        ("post", "/api/cases", {"patient": "Patient/p1", "center": "cardiac", "who": WHO}, 422,
         "center"),
        ("post", "/api/cases/nope/nodes/door", {"time": "2026-11-25T08:00:00+08:00", "who": WHO,
                                               "why": "x"}, 404, "no center case"),
        ("post", "{case}/nodes/wire_crosing", {"time": "2026-11-25T08:00:00+08:00", "who": WHO,
                                              "why": "x"}, 422,
         "'wire_crosing' is not a chest_pain node"),
        ("post", "{case}/nodes/door", {"time": "2026-11-25T08:00:00", "who": WHO, "why": "x"}, 422,
         "needs an offset"),
        ("post", "{case}/nodes/door", {"time": "2026-11-25T08:00:00+08:00", "who": WHO}, 422,
         "why"),
        ("put", "{case}/facts/arrival_mode", {"value": "walk_in", "who": WHO}, 422,
         "'walk_in' is not a value of arrival_mode; allowed: ems, transfer, self, in_hospital"),
        ("put", "{case}/facts/reperfusion", {"value": "thrombolysis", "who": WHO}, 422,
         "'thrombolysis' is not a value of reperfusion; allowed: primary_pci, in_hospital_lysis"),
        ("put", "{case}/facts/gave_up", {"value": True, "who": WHO}, 422,
         "fact name 'gave_up' is not in facts.yaml; known: arrival_mode, diagnosis"),
        ("put", "{case}/facts/iss", {"value": 80, "who": WHO}, 422, "iss must lie within 0"),
    ],
)  # fmt: skip
async def test_bad_requests_say_what_is_wrong(
    http: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    if "{case}" in path:
        case = await open_case(http)
        path = path.replace("{case}", f"/api/cases/{case['id']}")
    response = await getattr(http, method)(path, json=body)
    assert response.status_code == status, response.text
    assert says in response.text


async def test_running_clocks_show_time_since_door_and_each_rule_until_its_end_node(
    http: httpx.AsyncClient,
) -> None:
    case = await open_case(http, center="stroke", why="右侧肢体无力")
    response = await http.get(f"/api/cases/{case['id']}/clocks")
    assert response.status_code == 200, response.text
    clocks = response.json()
    now = datetime.fromisoformat(clocks["now"])
    door = datetime.fromisoformat("2026-11-25T08:28:00+08:00")  # the ED visit's start
    assert clocks["since_door_s"] == int((now - door).total_seconds())
    assert clocks["since_onset_s"] is None and clocks["onset_node"] is None
    physician = next(c for c in clocks["clocks"] if c["rule"] == "stroke.d2physician")
    # A day later nobody has seen the patient: both deadlines passed, the clock alerts.
    assert physician["status"] == "alerting" and physician["end_node"] is None
    assert physician["started_at"] == door.isoformat()
    assert physician["elapsed_s"] == clocks["since_door_s"]
    assert [(s["name"], s["deadline"], s["reached"]) for s in physician["steps"]] == [
        ("warning", (door + timedelta(minutes=8)).isoformat(), True),
        ("limit", (door + timedelta(minutes=10)).isoformat(), True),
    ]

    seen = {"time": "2026-11-25T08:35:00+08:00", "who": "李医生", "why": "急诊接诊记录"}
    entered = await http.post(f"/api/cases/{case['id']}/nodes/ed_physician", json=seen)
    assert entered.status_code == 200, entered.text
    after = (await http.get(f"/api/cases/{case['id']}/clocks")).json()
    physician = next(c for c in after["clocks"] if c["rule"] == "stroke.d2physician")
    assert physician["status"] == "met" and physician["end_node"] == "ed_physician"
    assert physician["ended_at"] == "2026-11-25T08:35:00+08:00"
    assert physician["elapsed_s"] == 7 * 60
    assert [s["reached"] for s in physician["steps"]] == [False, False]
    team = next(c for c in after["clocks"] if c["rule"] == "stroke.d2team")
    assert team["status"] == "alerting"
    assert (await http.get("/api/cases/no-such-case/clocks")).status_code == 404
