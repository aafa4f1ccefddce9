"""The patient archive built from a real FHIR store (SQLite and PostgreSQL): sections, the
ordered timeline and its intervals, cases with few data, unknown cases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database
from pathways.archive import CaseNotFound, build_archive
from pathways.archive_config import default_config
from pathways.vocabulary import CASE_EXTENSION, INDICATOR_SYSTEM, TIME_NODE_SYSTEM
from tests.pathways.archive_cases import (
    Case,
    at,
    few_data_case,
    iso,
    stemi_by_120_with_primary_pci,
    stroke_with_lysis,
    vital,
    write,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[FhirStore]:
    database: AsyncEngine = create_database(database_url)
    await migrate(database)
    fhir = FhirStore(database)
    try:
        yield fhir
    finally:
        await fhir.aclose()
        await database.dispose()


async def archive_of(store: FhirStore, case: Case) -> dict[str, Any]:
    await write(store, case)
    return await build_archive(store, case.case_id, now=at("2024-07-02 09:00:00"))


def display(seconds: int) -> str:
    """The expected display of an interval, written out independently of the code."""
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    h, m, s = seconds // 3600, seconds % 3600 // 60, seconds % 60
    return f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m:02d}:{s:02d}"


def span(start: datetime | None, end: datetime) -> dict[str, Any] | None:
    if start is None:
        return None
    seconds = int((end - start).total_seconds())
    return {"seconds": seconds, "display": display(seconds)}


async def test_the_timeline_is_in_time_order_with_intervals_from_the_instants_written(
    store: FhirStore,
) -> None:
    case = stemi_by_120_with_primary_pci()
    archive = await archive_of(store, case)
    timeline = archive["timeline"]
    expected = sorted(case.nodes.items(), key=lambda item: item[1])
    assert [node["key"] for node in timeline["nodes"]] == [key for key, _ in expected]
    door, fmc, onset = (
        case.nodes["door"],
        case.nodes["first_medical_contact"],
        case.nodes["symptom_onset"],
    )
    previous = None
    for node, (key, instant) in zip(timeline["nodes"], expected, strict=True):
        assert node["time"] == iso(instant)
        assert node["since_previous"] == span(previous, instant), key
        assert node["from_door"] == span(door, instant), key
        assert node["from_fmc"] == span(fmc, instant), key
        assert node["from_onset"] == span(onset, instant), key
        previous = instant
    wire = next(node for node in timeline["nodes"] if node["key"] == "wire_crossing")
    assert wire["from_door"]["display"] == "40:08"  # D2W of this case: 08:51:12 → 09:31:20
    assert wire["label"] == "导丝通过"
    assert timeline["references"]["door"]["time"] == "2024-03-05T08:51:12+08:00"
    assert timeline["labels_from"] == "config/pathways/catalogue.yaml"


async def test_a_node_shows_the_other_sources_only_where_they_disagree(store: FhirStore) -> None:
    archive = await archive_of(store, stemi_by_120_with_primary_pci())
    nodes = {node["key"]: node for node in archive["timeline"]["nodes"]}
    door = nodes["door"]
    assert door["sources"] == ["uwb"]
    assert door["other_sources"] == [
        {
            "time": "2024-03-05T08:55:03+08:00",
            "source": "hl7v2",
            "status": "preliminary",
            "resource": "Observation/cp-stemi-1-door-c2",
            "difference": {"seconds": 231, "display": "03:51"},
        }
    ]
    assert nodes["wire_crossing"]["other_sources"] == []  # its candidate agrees


async def test_the_stemi_archive_has_every_section(store: FhirStore) -> None:
    archive = await archive_of(store, stemi_by_120_with_primary_pci())
    case = archive["case"]
    assert (case["center"], case["center_label"], case["status"]) == (
        "chest_pain",
        "胸痛中心",
        "finished",
    )
    assert case["facts"] == {"diagnosis": "STEMI", "reperfusion": "primary_pci"}
    assert archive["patient"]["name"] == "王建国"
    emergency = archive["emergency"]
    assert (emergency["arrival_mode"], emergency["arrival_mode_label"]) == ("ems", "呼叫120")
    prehospital = emergency["prehospital"]
    assert prehospital["visits"] == ["Encounter/enc-120"]
    assert [n["key"] for n in prehospital["nodes"]] == [
        "call_for_help",
        "first_medical_contact",
    ]
    assert [(v["name"], v["value"]) for v in prehospital["vitals"]] == [
        ("心率", "98 /min"),
        ("收缩压", "150 mmHg"),
    ]
    assert [e["resource"] for e in prehospital["ecgs"]] == ["Observation/ecg-1"]
    assert [(v["class"], v["start"]) for v in emergency["visits"]] == [
        ("FLD", "2024-03-05T08:05:00+08:00"),
        ("EMER", "2024-03-05T08:51:12+08:00"),
        ("IMP", "2024-03-05T10:10:00+08:00"),
    ]
    assert [p["location"] for p in emergency["visits"][1]["locations"]] == ["急诊抢救室", "导管室"]
    (heart_rate,) = emergency["vitals"]  # the ED monitor's; the ambulance's are prehospital
    assert heart_rate["count"] == 3
    assert heart_rate["first"] == {"time": "2024-03-05T08:53:00+08:00", "value": "104 /min"}
    assert heart_rate["last"]["value"] == "112 /min"
    assert heart_rate["lowest"]["value"] == "88 /min"
    assert heart_rate["highest"]["value"] == "112 /min"
    (ecg,) = emergency["ecgs"]
    assert ecg["acquired"] == "2024-03-05T08:18:00+08:00"
    assert ecg["signed"] == "2024-03-05T08:24:45+08:00"
    assert ecg["reading"] == "窦性心律；急性下壁ST段抬高型心肌梗死"
    assert ecg["conclusions"] == ["STEMI"]
    assert ecg["report"] == "DiagnosticReport/ecg-report-1"
    assert ecg["interpreter"] == "李医生"
    (troponin,) = emergency["labs"]  # the result of February is another visit's
    assert (troponin["name"], troponin["value"], troponin["flag"]) == (
        "肌钙蛋白I",
        "2.35 ng/mL",
        "H",
    )
    assert troponin["reported"] == "2024-03-05T09:20:00+08:00"
    assert archive["diagnosis"]["case_diagnosis"] == "STEMI"
    assert [c["name"] for c in archive["diagnosis"]["conditions"]] == ["急性下壁ST段抬高型心肌梗死"]
    treatment = archive["treatment"]
    assert treatment["reperfusion"] == "primary_pci"
    assert [(p["name"], p["start"], p["end"]) for p in treatment["procedures"]] == [
        ("经皮冠状动脉介入治疗 (PCI)", "2024-03-05T09:09:05+08:00", "2024-03-05T10:02:00+08:00")
    ]
    assert [(m["name"], m["dose"], m["time"]) for m in treatment["medications"]] == [
        ("阿司匹林", "300 mg", "2024-03-05T08:26:00+08:00"),
        ("替格瑞洛", "180 mg", "2024-03-05T08:27:30+08:00"),
        ("普通肝素", "7000 U", "2024-03-05T09:10:00+08:00"),
    ]
    assert archive["outcome"] == {
        "case_status": "finished",
        "discharge_time": "2024-03-12T10:00:00+08:00",
        "disposition": {"code": "home", "display": "Home"},
        "died": False,
        "death_time": None,
    }
    (killip,) = archive["scores"]
    assert (killip["name"], killip["total"], killip["phase"], killip["version"]) == (
        "Killip class",
        1,
        "admission",
        "killip-1967",
    )
    assert killip["items"][0] == {
        "name": "cardiogenic_shock",
        "code": "killip.cardiogenic_shock",
        "answer": "no",
        "points": 0,
    }
    assert archive["missing"] == []


async def test_another_case_of_the_same_patient_stays_out(store: FhirStore) -> None:
    archive = await archive_of(store, stemi_by_120_with_primary_pci())
    resources = {node["resource"] for node in archive["timeline"]["nodes"]}
    assert "Observation/old-door" not in resources
    assert [n["key"] for n in archive["timeline"]["nodes"]].count("door") == 1
    old = await build_archive(store, "cp-stemi-old")
    assert [n["resource"] for n in old["timeline"]["nodes"]] == ["Observation/old-door"]
    assert old["emergency"]["labs"] == []  # the 2024 results are not in its 2022 period


async def test_the_stroke_archive_measures_door_to_needle_and_shows_ct_and_nihss(
    store: FhirStore,
) -> None:
    case = stroke_with_lysis()
    archive = await archive_of(store, case)
    nodes = {node["key"]: node for node in archive["timeline"]["nodes"]}
    needle = nodes["lytic_start"]
    assert needle["from_door"] == span(case.nodes["door"], case.nodes["lytic_start"])
    assert needle["from_onset"] == span(case.nodes["symptom_onset"], case.nodes["lytic_start"])
    assert needle["from_fmc"] is None  # no first medical contact recorded
    assert archive["timeline"]["references"]["fmc"] is None
    (ct,) = archive["emergency"]["imaging"]
    assert (ct["modality"], ct["name"], ct["conclusion"]) == ("CT", "头颅CT平扫", "未见颅内出血")
    assert (ct["started"], ct["reported"]) == (
        "2024-06-18T14:35:10+08:00",
        "2024-06-18T14:48:00+08:00",
    )
    (nihss,) = archive["scores"]
    assert (nihss["code"], nihss["total"], nihss["name"], nihss["band"]) == (
        "72089-6",
        8,
        "NIH Stroke Scale",
        "moderate",
    )
    assert [(i["name"], i["answer"], i["points"]) for i in nihss["items"]] == [
        ("1a", "1", 1),
        ("5a", "3", 3),
        ("6a", "4", 4),
    ]
    assert [m["name"] for m in archive["treatment"]["medications"]] == ["阿替普酶"]
    assert archive["outcome"]["discharge_time"] is None
    assert archive["missing"] == []


async def test_a_case_with_few_data_lists_what_is_missing(store: FhirStore) -> None:
    archive = await archive_of(store, few_data_case())
    assert archive["timeline"]["nodes"] == []
    assert archive["emergency"]["visits"] == []
    missing = {gap["item"]: gap["reason"] for gap in archive["missing"]}
    for key in default_config().expected_nodes["chest_pain"]:
        assert f"timeline.{key}" in missing
    assert "到达本院大门" in missing["timeline.door"]
    assert {"arrival_mode", "diagnosis", "vitals", "ecgs", "labs", "medications"} <= set(missing)


async def test_a_case_whose_patient_is_not_stored_still_gives_an_archive(
    store: FhirStore,
) -> None:
    case = few_data_case()
    await write(store, case)
    episode = await store.read("EpisodeOfCare", case.case_id)
    del episode["patient"]  # no patient reference at all
    episode["patient"] = {"display": "unknown"}
    await store.update("EpisodeOfCare", case.case_id, episode)
    archive = await build_archive(store, case.case_id)
    assert archive["patient"] is None
    assert "patient" in {gap["item"] for gap in archive["missing"]}


async def test_unresolved_candidates_are_shown_apart(store: FhirStore) -> None:
    case = few_data_case()
    case.node("door", at("2024-07-01 02:10:00"), source="uwb")
    case.resources = [
        r for r in case.resources if r.get("status") != "final" or "door" not in r["id"]
    ]
    archive = await archive_of(store, case)
    assert archive["timeline"]["nodes"] == []
    (pending,) = archive["timeline"]["unresolved"]
    assert pending["key"] == "door"
    assert pending["candidates"][0]["source"] == "uwb"
    missing = {gap["item"]: gap["reason"] for gap in archive["missing"]}
    assert "candidates wait for resolution" in missing["timeline.door"]


async def test_labels_come_from_the_published_time_node_codesystem(store: FhirStore) -> None:
    await store.update(
        "CodeSystem",
        "time-node",
        {
            "resourceType": "CodeSystem",
            "id": "time-node",
            "url": TIME_NODE_SYSTEM,
            "status": "active",
            "content": "complete",
            "concept": [
                {
                    "code": "door",
                    "display": "Door",
                    "designation": [{"language": "zh-CN", "value": "到达医院大门"}],
                }
            ],
        },
    )
    archive = await archive_of(store, stroke_with_lysis())
    labels = {node["key"]: node["label"] for node in archive["timeline"]["nodes"]}
    assert labels["door"] == "到达医院大门"
    assert labels["ct_start"] == "CT扫描开始"  # not in the CodeSystem: from the data file
    assert archive["timeline"]["labels_from"] == "CodeSystem/time-node"


async def test_times_sent_in_utc_are_shown_in_local_time(store: FhirStore) -> None:
    case = stroke_with_lysis()
    for resource in case.resources:
        if resource["id"] == "st-lysis-1-door":
            resource["valueDateTime"] = "2024-06-18T06:20:00Z"
    archive = await archive_of(store, case)
    door = archive["timeline"]["references"]["door"]
    assert door["time"] == "2024-06-18T14:20:00+08:00"


async def test_an_unknown_case_or_an_episode_of_no_center_is_not_found(store: FhirStore) -> None:
    with pytest.raises(CaseNotFound, match="no EpisodeOfCare with this id"):
        await build_archive(store, "no-such-case")
    await store.update(
        "EpisodeOfCare",
        "plain",
        {
            "resourceType": "EpisodeOfCare",
            "id": "plain",
            "status": "active",
            "patient": {"display": "x"},
        },
    )
    with pytest.raises(CaseNotFound, match="no type from"):
        await build_archive(store, "plain")


async def test_a_search_past_the_bound_keeps_the_earliest_vitals_and_says_so(
    store: FhirStore,
) -> None:
    case = stroke_with_lysis()
    for minute in range(30):  # the bedside monitor, one reading a minute
        case.add(
            vital(case, f"v-mon-{minute}", "enc-st-ed", at("2024-06-18 14:30:00") +
                  timedelta(minutes=minute), "8867-4", "心率", 80 + minute, "/min")
        )  # fmt: skip
    await write(store, case)
    archive = await build_archive(store, case.case_id, max_per_search=20)
    # the 20 earliest readings: the blood pressure of 14:22 and the rates of 14:30 to 14:48
    by_name = {v["name"]: v for v in archive["emergency"]["vitals"]}
    assert (by_name["收缩压"]["count"], by_name["心率"]["count"]) == (1, 19)
    assert by_name["心率"]["last"] == {"time": "2024-06-18T14:48:00+08:00", "value": "98 /min"}
    assert len(archive["timeline"]["nodes"]) == len(case.nodes)  # 14 node resources: no cut
    assert [m["name"] for m in archive["treatment"]["medications"]] == ["阿替普酶"]
    cut = [gap["reason"] for gap in archive["missing"] if gap["item"] == "store"]
    assert cut == ["vital signs (Observation): more than 20; the archive has the earliest 20"]


def key_paths(value: Any, path: str = "") -> set[str]:
    """Every key path of a JSON value (`timeline.nodes[].from_door.seconds`); a list's items
    are merged; the case facts are a free map."""
    if isinstance(value, dict) and path != "case.facts":
        found = {path} if path else set()
        for key, item in value.items():
            found |= key_paths(item, f"{path}.{key}" if path else key)
        return found
    if isinstance(value, list):
        return {path}.union(*(key_paths(item, f"{path}[]") for item in value))
    return {path}


@pytest.fixture
def documented() -> dict[str, Any]:
    """The example document of docs/patient-archive.md."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "patient-archive.md").read_text(
        encoding="utf-8"
    )
    example: dict[str, Any] = json.loads(page.split("```json\n")[1].split("```")[0])
    return example


async def test_the_documented_json_shape_is_the_shape_the_archive_has(
    store: FhirStore, documented: dict[str, Any]
) -> None:
    waiting = few_data_case()
    waiting.node("troponin_draw", at("2024-07-01 02:40:00"))
    waiting.resources = [r for r in waiting.resources if r.get("status") != "final"]
    built = [
        await archive_of(store, case)
        for case in (stemi_by_120_with_primary_pci(), stroke_with_lysis(), waiting)
    ]
    assert key_paths(documented) == set().union(*(key_paths(archive) for archive in built))


async def test_only_scores_are_scores(store: FhirStore) -> None:
    case = stroke_with_lysis()
    linked = {
        "url": CASE_EXTENSION,
        "valueReference": {"reference": f"EpisodeOfCare/{case.case_id}"},
    }
    interval = {  # the door-to-needle interval the indicators write
        "resourceType": "Observation",
        "id": "dnt-1",
        "extension": [linked],
        "status": "final",
        "code": {"coding": [{"system": INDICATOR_SYSTEM, "code": "stroke.dnt"}]},
        "subject": {"reference": "Patient/p-stroke"},
        "effectiveDateTime": "2024-06-18T14:58:30+08:00",
        "valueQuantity": {"value": 2310, "unit": "s", "system": "http://unitsofmeasure.org"},
    }
    glucose = vital(
        case, "glu-1", "enc-st-ed", at("2024-06-18 14:24:00"), "2339-0", "血糖", 6.1, "mmol/L"
    )
    glucose["extension"] = [linked]
    case.add(interval)
    case.add(glucose)
    archive = await archive_of(store, case)
    assert [score["code"] for score in archive["scores"]] == ["72089-6"]
