"""FHIRPath Patch: PATCH with a Parameters body over HTTP, and the operations' edge cases."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from fhir_store import InvalidRequest
from fhir_store._fhirpath_patch import apply_fhirpath_patch

pytestmark = pytest.mark.anyio

FHIR_JSON = {"Content-Type": "application/fhir+json"}
MRN = "urn:oid:1.2.156.112604.1.2.1"


def operation(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One `operation` parameter; `value_x={"valueCode": ...}` style parts pass through."""
    part: list[dict[str, Any]] = [
        {"name": "type", "valueCode": kind},
        {"name": "path", "valueString": path},
    ]
    for name, value in parts.items():
        if name in ("index", "source", "destination"):
            part.append({"name": name, "valueInteger": value})
        elif name == "name":
            part.append({"name": name, "valueString": value})
        else:
            part.append({"name": "value", **value})
    return {"name": "operation", "part": part}


def parameters(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": MRN, "value": "0001"}],
        "name": [{"family": "张", "given": ["三"]}],
        "birthDate": "1960-01-01",
        "gender": "male",
    }


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


async def created(http: httpx.AsyncClient) -> str:
    response = await http.post("/Patient", json=patient())
    assert response.status_code == 201
    resource_id: str = response.json()["id"]
    return resource_id


async def test_a_fhirpath_patch_makes_a_new_version(fhir_http: httpx.AsyncClient) -> None:
    patient_id = await created(fhir_http)
    body = parameters(
        operation("replace", "Patient.birthDate", value={"valueDate": "1961-02-03"}),
        operation("add", "Patient", name="active", value={"valueBoolean": True}),
        operation("insert", "Patient.name", index=0, value={"valueHumanName": {"text": "老张"}}),
        operation("delete", "Patient.identifier.where(use = 'official')"),
    )
    response = await fhir_http.patch(f"/Patient/{patient_id}", json=body, headers=FHIR_JSON)
    assert response.status_code == 200 and response.headers["etag"] == 'W/"2"'
    stored = (await fhir_http.get(f"/Patient/{patient_id}")).json()
    expected = patient()
    expected.update(birthDate="1961-02-03", active=True)
    expected["name"].insert(0, {"text": "老张"})
    del expected["identifier"]
    assert {key: value for key, value in stored.items() if key not in ("id", "meta")} == expected


async def test_if_match_guards_a_fhirpath_patch(fhir_http: httpx.AsyncClient) -> None:
    patient_id = await created(fhir_http)
    body = parameters(operation("replace", "Patient.gender", value={"valueCode": "female"}))
    stale = await fhir_http.patch(
        f"/Patient/{patient_id}", json=body, headers={**FHIR_JSON, "If-Match": 'W/"7"'}
    )
    assert stale.status_code == 412
    fresh = await fhir_http.patch(
        f"/Patient/{patient_id}", json=body, headers={**FHIR_JSON, "If-Match": 'W/"1"'}
    )
    assert fresh.status_code == 200 and fresh.json()["gender"] == "female"


async def test_fhirpath_patch_errors_name_the_operation(fhir_http: httpx.AsyncClient) -> None:
    patient_id = await created(fhir_http)
    url = f"/Patient/{patient_id}"
    missing = parameters(
        operation("replace", "Patient.gender", value={"valueCode": "female"}),
        operation("replace", "Patient.deceased", value={"valueBoolean": True}),
    )
    response = await fhir_http.patch(url, json=missing, headers=FHIR_JSON)
    assert response.status_code == 400
    assert issue(response)["expression"] == ["Parameters.parameter[1]"]
    assert "operation 1 (replace)" in issue(response)["diagnostics"]
    syntax = parameters(operation("delete", "Patient.name.where(("))
    response = await fhir_http.patch(url, json=syntax, headers=FHIR_JSON)
    assert response.status_code == 400 and "FHIRPath" in issue(response)["diagnostics"]
    invalid = parameters(operation("replace", "Patient.gender", value={"valueInteger": 7}))
    response = await fhir_http.patch(url, json=invalid, headers=FHIR_JSON)
    assert response.status_code == 422 and issue(response)["expression"] == ["Patient.gender"]
    not_parameters = await fhir_http.patch(url, json=patient(), headers=FHIR_JSON)
    assert not_parameters.status_code == 400
    other_type = await fhir_http.patch(url, content=b"x", headers={"Content-Type": "text/plain"})
    assert other_type.status_code == 415 and issue(other_type)["expression"] == ["Content-Type"]
    assert (await fhir_http.get(url)).headers["etag"] == 'W/"1"'


async def test_the_capability_statement_lists_both_patch_formats(
    fhir_http: httpx.AsyncClient,
) -> None:
    statement = (await fhir_http.get("/metadata")).json()
    assert statement["patchFormat"] == ["application/json-patch+json", "application/fhir+json"]


def patch_entry(url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"resource": resource, "request": {"method": "PATCH", "url": url}}


def json_patch_binary(operations: list[dict[str, Any]]) -> dict[str, Any]:
    data = base64.b64encode(json.dumps(operations).encode()).decode()
    return {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": data}


async def test_patch_entries_in_a_transaction(fhir_http: httpx.AsyncClient) -> None:
    patient_id = await created(fhir_http)
    url = f"Patient/{patient_id}"
    fhirpath = parameters(operation("replace", "Patient.gender", value={"valueCode": "female"}))
    json_patch = json_patch_binary([{"op": "add", "path": "/active", "value": False}])
    other = await created(fhir_http)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [patch_entry(url, fhirpath), patch_entry(f"Patient/{other}", json_patch)],
    }
    response = await fhir_http.post("", json=bundle)
    assert response.status_code == 200, response.text
    assert [e["response"]["etag"] for e in response.json()["entry"]] == ['W/"2"', 'W/"2"']
    assert (await fhir_http.get(f"/{url}")).json()["gender"] == "female"
    assert (await fhir_http.get(f"/Patient/{other}")).json()["active"] is False
    bundle["entry"].append(patch_entry("Patient/nobody", fhirpath))
    failed = await fhir_http.post("", json=bundle)
    assert failed.status_code == 404
    assert issue(failed)["diagnostics"].startswith("Bundle.entry[2]")
    assert (await fhir_http.get(f"/{url}")).headers["etag"] == 'W/"2"'  # nothing applied


async def test_patch_entries_in_a_batch_fail_alone(fhir_http: httpx.AsyncClient) -> None:
    patient_id = await created(fhir_http)
    fhirpath = parameters(operation("replace", "Patient.gender", value={"valueCode": "female"}))
    bad = parameters(operation("replace", "Patient.deceased", value={"valueBoolean": True}))
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            patch_entry("Patient/nobody", fhirpath),
            patch_entry(f"Patient/{patient_id}", fhirpath),
            patch_entry(f"Patient/{patient_id}", {"resourceType": "Basic"}),
            patch_entry(f"Patient/{patient_id}", bad),
        ],
    }
    response = await fhir_http.post("", json=bundle)
    assert response.status_code == 200
    statuses = [entry["response"]["status"][:3] for entry in response.json()["entry"]]
    assert statuses == ["404", "200", "400", "400"]
    outcome = response.json()["entry"][3]["response"]["outcome"]["issue"][0]
    assert outcome["expression"] == ["Parameters.parameter[0]"]
    assert (await fhir_http.get(f"/Patient/{patient_id}")).json()["gender"] == "female"


def test_delete_of_nothing_changes_nothing_and_of_several_is_refused() -> None:
    resource = patient()
    assert apply_fhirpath_patch(resource, parameters(operation("delete", "Patient.photo"))) == (
        resource
    )
    two = {**resource, "telecom": [{"value": "1"}, {"value": "2"}]}
    with pytest.raises(InvalidRequest, match="selects 2 elements"):
        apply_fhirpath_patch(two, parameters(operation("delete", "Patient.telecom")))


def test_move_and_insert_check_their_indexes() -> None:
    resource = {**patient(), "telecom": [{"value": "1"}, {"value": "2"}, {"value": "3"}]}
    moved = apply_fhirpath_patch(
        resource, parameters(operation("move", "Patient.telecom", source=2, destination=0))
    )
    assert [item["value"] for item in moved["telecom"]] == ["3", "1", "2"]
    assert [item["value"] for item in resource["telecom"]] == ["1", "2", "3"]  # a copy
    with pytest.raises(InvalidRequest, match="source 3"):
        apply_fhirpath_patch(
            resource, parameters(operation("move", "Patient.telecom", source=3, destination=0))
        )
    with pytest.raises(InvalidRequest, match="index 4"):
        apply_fhirpath_patch(
            resource,
            parameters(
                operation("insert", "Patient.telecom", index=4, value={"valueContactPoint": {}})
            ),
        )


def test_a_choice_element_takes_the_type_of_its_new_value() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "troponin"},
        "valueString": "pending",
        "_valueString": {"extension": [{"url": "http://x", "valueCode": "a"}]},
    }
    quantity = {"valueQuantity": {"value": 0.04, "unit": "ng/mL"}}
    patched = apply_fhirpath_patch(
        observation, parameters(operation("replace", "Observation.value", value=quantity))
    )
    assert patched["valueQuantity"] == quantity["valueQuantity"]
    assert "valueString" not in patched and "_valueString" not in patched
    added = apply_fhirpath_patch(
        {key: value for key, value in observation.items() if "alueString" not in key},
        parameters(operation("add", "Observation", name="value", value={"valueBoolean": True})),
    )
    assert added["valueBoolean"] is True


def test_malformed_operations_are_named() -> None:
    cases = [
        {"name": "op"},
        {"name": "operation", "part": [{"name": "type", "valueCode": "upsert"}]},
        {"name": "operation", "part": [{"name": "type", "valueCode": "add"}]},
        operation("add", "Patient", value={"valueBoolean": True}),  # no name
        operation("replace", "Patient.gender"),  # no value
        operation("insert", "Patient.name", value={"valueHumanName": {}}),  # no index
    ]
    for raw in cases:
        with pytest.raises(InvalidRequest) as caught:
            apply_fhirpath_patch(patient(), parameters(operation("delete", "Patient.photo"), raw))
        assert caught.value.expression == ["Parameters.parameter[1]"]
