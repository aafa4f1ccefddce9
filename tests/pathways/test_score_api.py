"""`/api/scores` on a real uvicorn server beside the FHIR API, on SQLite and PostgreSQL: the
stored Observation is read back from `/fhir` as a FHIR client would."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from engine.testing import as_role
from fhir_store import build_router, migrate
from fhir_store.app import create_database
from pathways.score_router import build_score_router
from pathways.vocabulary import (
    ASSESSMENT_PHASE_EXTENSION,
    CASE_EXTENSION,
    DATA_ABSENT_REASON,
    LOINC,
    SCORE_ANSWER_SYSTEM,
    SCORE_BAND_SYSTEM,
    SCORE_POINTS_EXTENSION,
    SCORE_SYSTEM,
    SCORE_VERSION_SYSTEM,
)
from tests.net import serve_app
from tests.pathways.score_examples import WORKED_EXAMPLES

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def serve(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Both routers as the engine mounts them, served by uvicorn on a free 127.0.0.1 port."""
    database = create_database(database_url)
    await migrate(database)
    app = FastAPI(dependencies=[Depends(as_role("clinician"))])  # as the token gate sets it
    app.include_router(build_router(database))
    app.include_router(build_score_router(database))
    try:
        async with (
            serve_app(app, lifespan="on") as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield http
    finally:
        await database.dispose()


@pytest.fixture
async def http(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(database_url) as client:
        yield client


async def create(http: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await http.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.text
    return f"{resource['resourceType']}/{response.json()['id']}"


@pytest.fixture
async def patient(http: httpx.AsyncClient) -> str:
    return await create(http, {"resourceType": "Patient", "name": [{"family": "测试"}]})


@pytest.fixture
async def case(http: httpx.AsyncClient, patient: str) -> str:
    return await create(
        http,
        {"resourceType": "EpisodeOfCare", "status": "active", "patient": {"reference": patient}},
    )


async def stored(http: httpx.AsyncClient, response: httpx.Response) -> dict[str, Any]:
    """The Observation of a 201 answer, as `/fhir` returns it."""
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    read = await http.get(location)
    assert read.status_code == 200, read.text
    observation: dict[str, Any] = read.json()
    assert observation == response.json()["observation"]
    return observation


def component(observation: dict[str, Any], code: str) -> dict[str, Any]:
    found = [c for c in observation["component"] if c["code"]["coding"][0]["code"] == code]
    assert len(found) == 1, code
    return found[0]


def points(component: dict[str, Any]) -> Any:
    (extension,) = [e for e in component.get("extension", []) if e["url"] == SCORE_POINTS_EXTENSION]
    return extension.get("valueInteger", extension.get("valueDecimal"))


async def test_gcs_for_a_patient_is_stored_with_loinc_codes(
    http: httpx.AsyncClient, patient: str
) -> None:
    practitioner = await create(http, {"resourceType": "Practitioner", "name": [{"family": "王"}]})
    response = await http.post(
        "/api/scores/GCS",
        json={"input": {"eye": 2, "verbal": 2, "motor": 4}, "patient": patient,
              "effective": "2026-11-25T08:30:00+08:00", "phase": "admission",
              "performer": practitioner},
    )  # fmt: skip
    observation = await stored(http, response)
    assert response.json()["result"]["total"] == 8
    assert observation["code"]["coding"] == [{"system": LOINC, "code": "9269-2"}]
    assert observation["valueInteger"] == 8
    assert observation["subject"] == {"reference": patient}
    assert observation["performer"] == [{"reference": practitioner}]
    assert observation["effectiveDateTime"] == "2026-11-25T08:30:00+08:00"
    assert observation["method"]["coding"] == [{"system": SCORE_VERSION_SYSTEM, "code": "gcs-1974"}]
    assert observation["interpretation"][0]["coding"] == [
        {"system": SCORE_BAND_SYSTEM, "code": "severe"}
    ]
    assert {"url": ASSESSMENT_PHASE_EXTENSION, "valueCode": "admission"} in observation["extension"]
    for code, answer in (("9267-6", 2), ("9270-0", 2), ("9268-4", 4)):
        item = component(observation, code)
        assert (item["valueInteger"], points(item)) == (answer, answer)
    # A FHIR client finds it by patient and LOINC code.
    search = await http.get(
        "/fhir/Observation", params={"subject": patient, "code": f"{LOINC}|9269-2"}
    )
    assert [e["resource"]["id"] for e in search.json()["entry"]] == [observation["id"]]


async def test_a_case_gives_the_subject_and_the_case_link(
    http: httpx.AsyncClient, patient: str, case: str
) -> None:
    data = WORKED_EXAMPLES["GRACE"][0]
    response = await http.post("/api/scores/GRACE", json={"input": data, "case": case})
    observation = await stored(http, response)
    assert observation["subject"] == {"reference": patient}
    assert {"url": CASE_EXTENSION, "valueReference": {"reference": case}} in observation[
        "extension"
    ]
    assert observation["code"]["coding"] == [{"system": SCORE_SYSTEM, "code": "grace-inhospital"}]
    assert observation["valueInteger"] == 179
    creatinine = component(observation, "grace-inhospital.creatinine_umol_l")
    assert creatinine["valueQuantity"]["value"] == 115
    assert creatinine["valueQuantity"]["code"] == "umol/L"
    assert points(creatinine) == 10
    assert component(observation, "grace-inhospital.st_deviation")["valueBoolean"] is True
    assert len(observation["component"]) == 8


async def test_default_effective_is_now_at_plus_8_to_the_second(
    http: httpx.AsyncClient, patient: str
) -> None:
    data = WORKED_EXAMPLES["TI"][0]
    response = await http.post("/api/scores/TI", json={"input": data, "patient": patient})
    observation = await stored(http, response)
    effective = datetime.fromisoformat(observation["effectiveDateTime"])
    assert observation["effectiveDateTime"].endswith("+08:00")
    assert effective.utcoffset() == timedelta(hours=8) and effective.microsecond == 0
    assert abs((datetime.now(effective.tzinfo) - effective).total_seconds()) < 60
    assert "extension" not in observation  # no phase, no case given


async def test_effective_in_another_offset_is_stored_at_plus_8(
    http: httpx.AsyncClient, patient: str
) -> None:
    response = await http.post(
        "/api/scores/mRS",
        json={"input": {"timepoint": "day_90", "mrs": 2}, "patient": patient,
              "effective": "2026-11-25T00:30:00.750Z"},
    )  # fmt: skip
    assert (await stored(http, response))["effectiveDateTime"] == "2026-11-25T08:30:00+08:00"


async def test_gcs_verbal_t_has_no_value_and_a_local_t_answer(
    http: httpx.AsyncClient, patient: str
) -> None:
    response = await http.post(
        "/api/scores/GCS", json={"input": {"eye": 2, "verbal": "T", "motor": 4}, "patient": patient}
    )
    observation = await stored(http, response)
    assert "valueInteger" not in observation
    assert observation["dataAbsentReason"]["coding"] == [
        {"system": DATA_ABSENT_REASON, "code": "not-applicable"}
    ]
    verbal = component(observation, "9270-0")
    assert verbal["valueCodeableConcept"]["coding"] == [
        {"system": SCORE_ANSWER_SYSTEM, "code": "T"}
    ]
    assert "extension" not in verbal  # no points for a not-testable answer


async def test_nihss_un_is_stored_as_un_never_0(http: httpx.AsyncClient, patient: str) -> None:
    data = dict(WORKED_EXAMPLES["NIHSS"][0], **{"5a": "UN", "7": "UN"})
    response = await http.post("/api/scores/NIHSS", json={"input": data, "patient": patient})
    observation = await stored(http, response)
    assert observation["code"]["coding"] == [{"system": LOINC, "code": "72089-6"}]
    assert observation["valueInteger"] == 15
    assert len(observation["component"]) == 15
    arm = component(observation, "70190-4")
    assert arm["valueCodeableConcept"]["coding"] == [{"system": LOINC, "code": "LA18461-6"}]
    ataxia = component(observation, "70192-0")
    assert ataxia["valueCodeableConcept"]["coding"] == [
        {"system": SCORE_ANSWER_SYSTEM, "code": "UN"}
    ]
    assert "valueInteger" not in arm and "extension" not in arm


async def test_rts_is_a_decimal_quantity(http: httpx.AsyncClient, patient: str) -> None:
    data = WORKED_EXAMPLES["RTS"][0]
    response = await http.post("/api/scores/RTS", json={"input": data, "patient": patient})
    observation = await stored(http, response)
    assert observation["valueQuantity"]["value"] == 4.9438
    assert points(component(observation, "rts.gcs")) == 1.8736


async def test_aspects_and_niss_keep_what_the_total_was_made_of(
    http: httpx.AsyncClient, patient: str
) -> None:
    response = await http.post(
        "/api/scores/ASPECTS", json={"input": {"affected_regions": ["I", "M2"]}, "patient": patient}
    )
    observation = await stored(http, response)
    affected = [c["code"]["text"] for c in observation["component"] if c["valueBoolean"]]
    assert affected == ["I", "M2"] and len(observation["component"]) == 10
    data = WORKED_EXAMPLES["NISS"][0]
    response = await http.post("/api/scores/NISS", json={"input": data, "patient": patient})
    observation = await stored(http, response)
    injuries = [
        (c["code"]["coding"][0]["code"], c["valueInteger"]) for c in observation["component"]
    ]
    assert injuries == [
        ("niss.abdomen", 4),
        ("niss.abdomen", 4),
        ("niss.abdomen", 3),
        ("niss.chest", 2),
    ]


async def test_every_worked_example_is_stored(http: httpx.AsyncClient, patient: str) -> None:
    # One server for all examples: a fresh PostgreSQL database per test costs seconds.
    for name, (data, expected_total, _) in WORKED_EXAMPLES.items():
        response = await http.post(f"/api/scores/{name}", json={"input": data, "patient": patient})
        observation = await stored(http, response)
        value = observation.get("valueInteger", observation.get("valueQuantity", {}).get("value"))
        assert value == expected_total, name
        assert observation["component"], name


async def test_bad_input_is_422_naming_the_item(http: httpx.AsyncClient, patient: str) -> None:
    response = await http.post(
        "/api/scores/GCS",
        json={"input": {"eye": True, "verbal": 2, "motor": 4}, "patient": patient},
    )
    assert response.status_code == 422
    (issue,) = response.json()["issue"]
    assert issue["expression"] == ["input.eye"]
    assert (
        issue["diagnostics"] == "eye: true is not allowed (an integer is required); allowed: 1..4"
    )
    assert response.json()["resourceType"] == "OperationOutcome"


GCS = {"eye": 2, "verbal": 2, "motor": 4}
BAD_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"patient": "Patient/1"}, "input"),
    ({"input": GCS}, "patient"),
    ({"input": GCS, "patient": "Patient/1", "note": "x"}, "note"),
    ({"input": GCS, "patient": "Patient/1", "effective": "2026-11-25T08:30:00"}, "effective"),
    ({"input": GCS, "patient": "Patient/1", "effective": "yesterday"}, "effective"),
    ({"input": GCS, "patient": "Patient/1", "phase": "Admission now"}, "phase"),
    ({"input": GCS, "patient": "123"}, "patient"),
    ({"input": GCS, "case": "Patient/1"}, "case"),
    ({"input": GCS, "patient": "Patient/1", "performer": "Dr Wang"}, "performer"),
]


async def test_bad_requests_are_422_naming_the_key(http: httpx.AsyncClient, patient: str) -> None:
    for body, expression in BAD_REQUESTS:
        if body.get("patient") == "Patient/1":
            body = dict(body, patient=patient)
        response = await http.post("/api/scores/GCS", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["issue"][0]["expression"] == [expression], body


async def test_a_body_that_is_not_one_json_object_is_422(http: httpx.AsyncClient) -> None:
    deep = b'{"input": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    for body in (b"{", b"[]", b'{"input": {}, "input": {}}', b"\xff", b"", b'{"input": NaN}', deep):
        response = await http.post("/api/scores/GCS", content=body)
        assert response.status_code == 422, body
        assert response.json()["resourceType"] == "OperationOutcome"


async def test_an_oversized_body_is_refused(http: httpx.AsyncClient, patient: str) -> None:
    body = {"input": {"ais": [{"region": "face", "severity": 1}] * 40_000}, "patient": patient}
    response = await http.post("/api/scores/ISS", json=body)
    assert response.status_code == 413
    assert "larger than" in response.json()["issue"][0]["diagnostics"]


async def test_unknown_score_patient_case_are_404(http: httpx.AsyncClient, patient: str) -> None:
    data = {"eye": 2, "verbal": 2, "motor": 4}
    unknown_score = await http.post("/api/scores/APACHE", json={"input": data, "patient": patient})
    assert unknown_score.status_code == 404
    assert "GCS" in unknown_score.json()["issue"][0]["diagnostics"]
    for body in ({"patient": "Patient/nobody"}, {"case": "EpisodeOfCare/none"}):
        response = await http.post("/api/scores/GCS", json={"input": data, **body})
        assert response.status_code == 404, response.text
        assert response.json()["issue"][0]["expression"] == list(body)


async def test_unknown_performer_is_422(http: httpx.AsyncClient, patient: str) -> None:
    data = {"eye": 2, "verbal": 2, "motor": 4}
    response = await http.post(
        "/api/scores/GCS", json={"input": data, "patient": patient, "performer": "Practitioner/x"}
    )
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["performer"]


async def test_patient_other_than_the_cases_is_refused(http: httpx.AsyncClient, case: str) -> None:
    other = await create(http, {"resourceType": "Patient"})
    data = {"eye": 2, "verbal": 2, "motor": 4}
    response = await http.post(
        "/api/scores/GCS", json={"input": data, "case": case, "patient": other}
    )
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["patient"]
    nothing = await http.get("/fhir/Observation", params={"subject": other})
    assert nothing.json().get("entry", []) == []


async def test_rescoring_adds_an_observation_and_keeps_the_first(
    http: httpx.AsyncClient, patient: str
) -> None:
    first = await http.post(
        "/api/scores/GCS", json={"input": {"eye": 2, "verbal": 2, "motor": 4}, "patient": patient}
    )
    second = await http.post(
        "/api/scores/GCS", json={"input": {"eye": 3, "verbal": 4, "motor": 6}, "patient": patient}
    )
    assert (await stored(http, first))["valueInteger"] == 8
    assert (await stored(http, second))["valueInteger"] == 13
    assert first.json()["observation"]["id"] != second.json()["observation"]["id"]


async def test_list_of_scores(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/scores")
    assert response.status_code == 200
    listed = {score["name"]: score for score in response.json()}
    assert list(listed) == list(WORKED_EXAMPLES)
    assert listed["GCS"]["version"] == "gcs-1974"
    assert listed["GCS"]["code"] == {"system": LOINC, "code": "9269-2"}
    assert listed["GCS"]["items"]["verbal"] == '1..5 or "T"'
    assert listed["TS"]["code"] == {"system": SCORE_SYSTEM, "code": "ts"}
