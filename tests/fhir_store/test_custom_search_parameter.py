"""Custom SearchParameter resources: searchable once stored, `$reindex` for what was written
before, listed in the CapabilityStatement, refused with a reason when they cannot be used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fhir_store import FhirStore

pytestmark = pytest.mark.anyio

Loader = Callable[[str], dict[str, Any]]
TIME_NODE = "http://greenchannel.example/fhir/StructureDefinition/time-node"
NODES = "http://greenchannel.example/fhir/CodeSystem/time-node"
STRICT = {"Prefer": "handling=strict"}


def time_node_parameter(code: str = "time-node-code") -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "url": f"http://greenchannel.example/fhir/SearchParameter/{code}",
        "name": "TimeNodeCode",
        "status": "active",
        "description": "The time node an Observation records",
        "code": code,
        "base": ["Observation"],
        "type": "token",
        "expression": f"Observation.extension.where(url = '{TIME_NODE}').value",
    }


def observation(resource_id: str, node: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"text": "time node"},
        "extension": [{"url": TIME_NODE, "valueCoding": {"system": NODES, "code": node}}],
    }


async def ids(http: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    response = await http.get(path, params=params, headers=STRICT)
    assert response.status_code == 200, response.text
    return sorted(e["resource"]["id"] for e in response.json().get("entry", []))


async def test_a_posted_parameter_indexes_new_writes_and_reindex_indexes_old_ones(
    store: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    await store.update("Observation", "before", observation("before", "door"))
    response = await fhir_http.get(
        "/Observation", params={"time-node-code": "door"}, headers=STRICT
    )
    assert response.status_code in (400, 501)

    created = await fhir_http.post("/SearchParameter", json=time_node_parameter())
    assert created.status_code == 201, created.text
    parameter_id = created.json()["id"]
    await store.update("Observation", "after", observation("after", "door"))
    await store.update("Observation", "other", observation("other", "ecg"))
    # written before the parameter: found only after $reindex
    assert await ids(fhir_http, "/Observation", **{"time-node-code": f"{NODES}|door"}) == ["after"]

    response = await fhir_http.post(f"/SearchParameter/{parameter_id}/$reindex")
    assert response.status_code == 200, response.text
    count = next(p for p in response.json()["parameter"] if p["name"] == "count")
    assert count["valueInteger"] == 3
    assert await ids(fhir_http, "/Observation", **{"time-node-code": "door"}) == ["after", "before"]
    assert await ids(fhir_http, "/Observation", **{"time-node-code:not": "door"}) == ["other"]

    statement = (await fhir_http.get("/metadata")).json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert {"name": "time-node-code", "type": "token"}.items() <= next(
        p for p in entry["searchParam"] if p["name"] == "time-node-code"
    ).items()

    # deleting the parameter takes it out of searches
    assert (await fhir_http.delete(f"/SearchParameter/{parameter_id}")).status_code == 204
    response = await fhir_http.get(
        "/Observation", params={"time-node-code": "door"}, headers=STRICT
    )
    assert response.status_code in (400, 501)


async def test_a_parameter_stored_before_a_restart_is_used_by_the_next_store(
    store: FhirStore, fhir_server: Any
) -> None:
    await store.create(time_node_parameter())
    await store.update("Observation", "o1", observation("o1", "door"))
    restarted = FhirStore(store.database)
    try:
        async with fhir_server(restarted) as http:
            assert await ids(http, "/Observation", **{"time-node-code": "door"}) == ["o1"]
    finally:
        await restarted.aclose()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"type": "composite"}, "SearchParameter.type"),
        ({"expression": "Observation.extension.where("}, "not valid FHIRPath"),
        ({"code": "time:node"}, "SearchParameter.code"),
        ({"base": ["Nothing"]}, "SearchParameter.base"),
    ],
)
async def test_reindex_of_an_unusable_parameter_says_why(
    store: FhirStore, fhir_http: httpx.AsyncClient, change: dict[str, Any], reason: str
) -> None:
    created = await fhir_http.post("/SearchParameter", json={**time_node_parameter(), **change})
    assert created.status_code == 201, created.text
    response = await fhir_http.post(f"/SearchParameter/{created.json()['id']}/$reindex")
    assert response.status_code == 400
    assert reason in response.json()["issue"][0]["diagnostics"]


async def test_type_reindex_and_a_custom_string_parameter_on_synthea(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    name = "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2"
    await store.transaction(synthea("0-hospitalInformation1625911868739.json.bz2"))
    await store.transaction(synthea("0-practitionerInformation1625911868739.json.bz2"))
    await store.transaction(synthea(name))
    parameter = {
        **time_node_parameter("value-unit"),
        "type": "string",
        "expression": "(Observation.value as Quantity).unit",
    }
    assert (await fhir_http.post("/SearchParameter", json=parameter)).status_code == 201
    response = await fhir_http.post("/Observation/$reindex")
    assert response.status_code == 200, response.text
    raw = [e["resource"] for e in synthea(name)["entry"]]
    observations = [r for r in raw if r["resourceType"] == "Observation"]
    units = sorted({o["valueQuantity"]["unit"] for o in observations if "valueQuantity" in o})
    assert len(units) > 3
    for unit in units[:4]:
        expected = sum(o.get("valueQuantity", {}).get("unit") == unit for o in observations)
        found = await fhir_http.get(
            "/Observation",
            params={"value-unit:exact": unit, "_summary": "count"},
            headers=STRICT,
        )
        assert found.json()["total"] == expected, unit
