"""If-Match, Prefer, PATCH, versioned and conditional DELETE and $validate over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def patient(family: str = "张", mrn: str = "0001") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"family": family}],
        "gender": "female",
    }


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


async def create(http: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await http.post(f"/{resource['resourceType']}", json=resource)
    assert response.status_code == 201
    resource_id: str = response.json()["id"]
    return resource_id


async def test_create_location_names_the_version(fhir_http: httpx.AsyncClient) -> None:
    response = await fhir_http.post("/Patient", json=patient())
    body = response.json()
    assert response.headers["location"] == f"Patient/{body['id']}/_history/1"


async def test_prefer_return_minimal_representation_and_outcome(
    fhir_http: httpx.AsyncClient,
) -> None:
    minimal = await fhir_http.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["etag"] == 'W/"1"' and "location" in minimal.headers
    patient_id = minimal.headers["location"].split("/")[1]
    outcome = await fhir_http.put(
        f"/Patient/{patient_id}",
        json={**patient("李"), "id": patient_id},
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert outcome.status_code == 200 and issue(outcome)["severity"] == "information"
    full = await fhir_http.put(
        f"/Patient/{patient_id}",
        json={**patient("王"), "id": patient_id},
        headers={"Prefer": "return=representation"},
    )
    assert full.json()["name"][0]["family"] == "王"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient(mrn="2"), "request": {"method": "POST", "url": "Patient"}}],
    }
    answered = await fhir_http.post("", json=bundle, headers={"Prefer": "return=OperationOutcome"})
    (entry,) = answered.json()["entry"]
    assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert "resource" not in entry


async def test_lost_updates_get_412_with_an_outcome(fhir_http: httpx.AsyncClient) -> None:
    patient_id = await create(fhir_http, patient())
    await fhir_http.put(f"/Patient/{patient_id}", json={**patient("李"), "id": patient_id})
    for response in (
        await fhir_http.put(
            f"/Patient/{patient_id}",
            json={**patient("王"), "id": patient_id},
            headers={"If-Match": 'W/"1"'},
        ),
        await fhir_http.delete(f"/Patient/{patient_id}", headers={"If-Match": 'W/"1"'}),
        await fhir_http.patch(
            f"/Patient/{patient_id}",
            json=[{"op": "replace", "path": "/gender", "value": "male"}],
            headers={**JSON_PATCH, "If-Match": 'W/"1"'},
        ),
    ):
        assert response.status_code == 412
        assert issue(response)["code"] == "conflict"
    assert (await fhir_http.get(f"/Patient/{patient_id}")).headers["etag"] == 'W/"2"'
    deleted = await fhir_http.delete(f"/Patient/{patient_id}", headers={"If-Match": 'W/"2"'})
    assert deleted.status_code == 204 and deleted.headers["etag"] == 'W/"3"'


async def test_patch_makes_a_new_version_through_the_update_path(
    fhir_http: httpx.AsyncClient,
) -> None:
    patient_id = await create(fhir_http, patient())
    patch = [
        {"op": "test", "path": "/name/0/family", "value": "张"},
        {"op": "replace", "path": "/name/0/family", "value": "李"},
        {"op": "add", "path": "/identifier/-", "value": {"system": "urn:x", "value": "9"}},
    ]
    patched = await fhir_http.patch(f"/Patient/{patient_id}", json=patch, headers=JSON_PATCH)
    assert patched.status_code == 200 and patched.headers["etag"] == 'W/"2"'
    assert patched.json()["name"][0]["family"] == "李"
    found = await fhir_http.get("/Patient", params={"identifier": "urn:x|9"})
    assert [entry["resource"]["id"] for entry in found.json()["entry"]] == [patient_id]
    again = await fhir_http.patch(
        f"/Patient/{patient_id}",
        json=[{"op": "replace", "path": "/name/0/family", "value": "李"}],
        headers=JSON_PATCH,
    )
    assert again.status_code == 200 and again.headers["etag"] == 'W/"2"'  # nothing changed
    history = (await fhir_http.get(f"/Patient/{patient_id}/_history")).json()
    assert history["total"] == 2


async def test_bad_patches_are_refused_with_their_reason(fhir_http: httpx.AsyncClient) -> None:
    patient_id = await create(fhir_http, patient())
    url = f"/Patient/{patient_id}"
    bad = await fhir_http.patch(
        url,
        json=[{"op": "add", "path": "/active", "value": True}, {"op": "remove", "path": "/x"}],
        headers=JSON_PATCH,
    )
    assert bad.status_code == 400 and issue(bad)["expression"] == ["operation[1]"]
    invalid = await fhir_http.patch(
        url, json=[{"op": "replace", "path": "/gender", "value": 7}], headers=JSON_PATCH
    )
    assert invalid.status_code == 422 and issue(invalid)["expression"] == ["Patient.gender"]
    renamed = await fhir_http.patch(
        url, json=[{"op": "replace", "path": "/id", "value": "other"}], headers=JSON_PATCH
    )
    assert renamed.status_code == 422
    retyped = await fhir_http.patch(
        url, json=[{"op": "replace", "path": "/resourceType", "value": "Group"}], headers=JSON_PATCH
    )
    assert retyped.status_code == 422
    fhirpath = await fhir_http.patch(url, json={"resourceType": "Parameters"})
    assert fhirpath.status_code == 415 and issue(fhirpath)["code"] == "not-supported"
    missing = await fhir_http.patch("/Patient/nobody", json=[], headers=JSON_PATCH)
    assert missing.status_code == 404
    assert (await fhir_http.get(url)).headers["etag"] == 'W/"1"'


async def test_delete_makes_a_version_and_conditional_delete_by_identifier(
    fhir_http: httpx.AsyncClient,
) -> None:
    patient_id = await create(fhir_http, patient())
    assert (await fhir_http.delete(f"/Patient/{patient_id}")).status_code == 204
    assert (await fhir_http.get(f"/Patient/{patient_id}")).status_code == 410
    again = await fhir_http.delete(f"/Patient/{patient_id}")
    assert again.status_code == 204 and "etag" not in again.headers
    history = (await fhir_http.get(f"/Patient/{patient_id}/_history")).json()
    assert [entry["request"]["method"] for entry in history["entry"]] == ["DELETE", "POST"]
    other = await create(fhir_http, patient(mrn="0002"))
    conditional = await fhir_http.delete("/Patient", params={"identifier": f"{MRN}|0002"})
    assert conditional.status_code == 204 and conditional.headers["etag"] == 'W/"2"'
    assert (await fhir_http.get(f"/Patient/{other}")).status_code == 410
    revived = await fhir_http.put(f"/Patient/{other}", json={**patient(mrn="0002"), "id": other})
    assert revived.status_code == 201 and revived.headers["etag"] == 'W/"3"'


async def test_validate_reports_valid_and_invalid_resources(fhir_http: httpx.AsyncClient) -> None:
    valid = await fhir_http.post("/Patient/$validate", json=patient())
    assert valid.status_code == 200 and issue(valid)["severity"] == "information"
    wrapped = await fhir_http.post(
        "/Patient/$validate",
        json={
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": patient()}],
        },
    )
    assert issue(wrapped)["severity"] == "information"
    broken = await fhir_http.post(
        "/Patient/$validate", json={**patient(), "gender": 7, "birthDate": "soon"}
    )
    issues = broken.json()["issue"]
    assert broken.status_code == 200
    assert {item["severity"] for item in issues} == {"error"}
    assert {path for item in issues for path in item["expression"]} >= {
        "Patient.gender",
        "Patient.birthDate",
    }
    mismatch = await fhir_http.post("/Patient/p1/$validate", json={**patient(), "id": "p2"})
    assert issue(mismatch)["expression"] == ["Patient.id"]
    wrong_type = await fhir_http.post("/Observation/$validate", json=patient())
    assert issue(wrong_type)["severity"] == "error"
