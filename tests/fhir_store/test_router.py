"""The FHIR REST API through a real uvicorn server on 127.0.0.1 and httpx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from fhir_store import FhirStore

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"
FHIR_JSON = "application/fhir+json"


@pytest.fixture
async def client(store: FhirStore, fhir_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client against the router, with a small body limit to test it."""
    async with fhir_server(store, max_body_bytes=64 * 1024) as http:
        yield http


def patient(family: str = "张") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": "0001"}],
        "name": [{"family": family}],
    }


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


async def test_create_read_update_with_etags(client: httpx.AsyncClient) -> None:
    created = await client.post("/Patient", json=patient())
    assert created.status_code == 201
    assert created.headers["content-type"].startswith(FHIR_JSON)
    assert created.headers["etag"] == 'W/"1"'
    location = created.headers["location"]
    patient_id = location.split("/")[1]
    read = await client.get(f"/Patient/{patient_id}")
    assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
    assert read.headers["last-modified"].endswith("GMT")
    assert read.json()["name"][0]["family"] == "张"
    updated = await client.put(
        f"/Patient/{patient_id}",
        json={**patient("李"), "id": patient_id},
        headers={"If-Match": 'W/"1"'},
    )
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    stale = await client.put(
        f"/Patient/{patient_id}",
        json={**patient("王"), "id": patient_id},
        headers={"If-Match": 'W/"1"'},
    )
    assert stale.status_code == 412
    assert issue(stale)["code"] == "conflict"


async def test_put_with_a_client_id_creates(client: httpx.AsyncClient) -> None:
    response = await client.put("/Patient/mrn-0001", json=patient())
    assert response.status_code == 201
    assert response.headers["location"] == "Patient/mrn-0001/_history/1"


async def test_delete_then_read_is_gone(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/p1", json=patient())
    deleted = await client.delete("/Patient/p1")
    assert deleted.status_code == 204
    gone = await client.get("/Patient/p1")
    assert gone.status_code == 410
    assert issue(gone)["code"] == "deleted"
    missing = await client.get("/Patient/nobody")
    assert missing.status_code == 404


async def test_identifier_search_returns_a_searchset(client: httpx.AsyncClient) -> None:
    await client.put("/Patient/p1", json=patient())
    found = await client.get("/Patient", params={"identifier": f"{MRN}|0001"})
    assert found.status_code == 200
    bundle = found.json()
    assert bundle["type"] == "searchset" and bundle["total"] == 1
    assert bundle["entry"][0]["resource"]["id"] == "p1"


async def test_unsupported_search_parameter_is_refused_when_strict(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/Patient", params={"shoe-size": "42"}, headers={"Prefer": "handling=strict"}
    )
    assert response.status_code == 400
    assert issue(response)["code"] == "not-supported"
    assert issue(response)["expression"] == ["shoe-size"]


async def test_malformed_json_says_where(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/Patient",
        content=b'{\n  "resourceType": "Patient",\n  "name": [}\n',
        headers={"Content-Type": FHIR_JSON},
    )
    assert response.status_code == 400
    assert "line 3 column" in issue(response)["diagnostics"]


async def test_invalid_resource_outcome_has_an_expression(client: httpx.AsyncClient) -> None:
    response = await client.put("/Patient/p1", json={"resourceType": "Patient", "id": "p2"})
    assert response.status_code == 400
    assert issue(response)["expression"] == ["Patient.id"]


async def test_unknown_resource_type_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get("/Patinet/1")
    assert response.status_code == 404


async def test_oversized_body_is_refused(client: httpx.AsyncClient) -> None:
    big = {**patient(), "text": {"status": "generated", "div": "x" * 70_000}}
    response = await client.post("/Patient", content=json.dumps(big))
    assert response.status_code == 413
    assert issue(response)["code"] == "too-long"


async def test_transaction_bundle_and_atomic_failure(client: httpx.AsyncClient) -> None:
    entry = {
        "fullUrl": "urn:uuid:p",
        "resource": patient(),
        "request": {"method": "PUT", "url": f"Patient?identifier={MRN}|0001"},
    }
    ok = await client.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    )
    assert ok.status_code == 200
    assert ok.json()["entry"][0]["response"]["status"] == "201 Created"
    bad_entry = {"request": {"method": "PATCH", "url": "Patient/p1"}}
    bad = await client.post(
        "", json={"resourceType": "Bundle", "type": "transaction", "entry": [entry, bad_entry]}
    )
    assert bad.status_code == 400
    assert "Bundle.entry[1]" in issue(bad)["diagnostics"]


async def test_metadata_tells_what_is_implemented(client: httpx.AsyncClient) -> None:
    response = await client.get("/metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["fhirVersion"] == "4.0.1"
    patient_entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    names = {p["name"] for p in patient_entry["searchParam"]}
    assert {"identifier", "birthdate", "gender", "name", "_id", "_lastUpdated"} <= names
    assert patient_entry["readHistory"] is True


async def test_every_listed_search_parameter_is_really_searchable(
    client: httpx.AsyncClient,
) -> None:
    statement = (await client.get("/metadata")).json()
    samples = {"token": "x", "string": "x", "reference": "Patient/x", "date": "2026",
               "number": "1", "quantity": "1", "uri": "http://x",
               "composite": "x$2026"}  # fmt: skip
    for resource_type in ("Patient", "Encounter", "Observation"):
        entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == resource_type)
        for parameter in entry["searchParam"]:
            if parameter["type"] == "special":  # _has takes a chain: test_search_chain.py
                continue
            response = await client.get(
                f"/{resource_type}",
                params={parameter["name"]: samples[parameter["type"]]},
                headers={"Prefer": "handling=strict"},
            )
            assert response.status_code == 200, (resource_type, parameter["name"], response.text)
