"""Composite search parameters: the components match within one element.

Blood pressure panels pin the same-component rule; Synthea answers (shared/data/fhir/synthea,
samply/blaze, Apache-2.0) are computed here from the raw bundles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fhir_store import FhirStore
from tests.fhir_store.conftest import every_entry

pytestmark = pytest.mark.anyio

Loader = Callable[[str], dict[str, Any]]
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SYSTOLIC, DIASTOLIC, PANEL = "8480-6", "8462-4", "85354-9"


async def ids(http: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    """The ids of every match, following next links."""
    found = await every_entry(http, path, params)
    return sorted(e["resource"]["id"] for e in found if e["search"]["mode"] == "match")


def quantity(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}


def panel(resource_id: str, systolic: float, diastolic: float) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": PANEL}]},
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": SYSTOLIC}]},
                "valueQuantity": quantity(systolic),
            },
            {
                "code": {"coding": [{"system": LOINC, "code": DIASTOLIC}]},
                "valueQuantity": quantity(diastolic),
            },
        ],
    }


@pytest.fixture
async def small(store: FhirStore) -> FhirStore:
    await store.update("Observation", "high", panel("high", 150, 95))
    await store.update("Observation", "normal", panel("normal", 118, 76))
    await store.update("Observation", "odd", panel("odd", 90, 140))  # diastolic above systolic
    await store.update(
        "Observation",
        "smoker",
        {
            "resourceType": "Observation",
            "id": "smoker",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
            "valueCodeableConcept": {
                "coding": [{"system": "http://snomed.info/sct", "code": "8517006"}]
            },
        },
    )
    await store.update(
        "Observation",
        "weight",
        {
            "resourceType": "Observation",
            "id": "weight",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
            "valueQuantity": {"value": 82, "system": UCUM, "code": "kg"},
        },
    )
    return store


async def test_component_code_and_value_must_be_on_the_same_component(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    search = "component-code-value-quantity"
    assert await ids(fhir_http, "/Observation", **{search: f"{LOINC}|{SYSTOLIC}$gt130"}) == ["high"]
    # odd has a value above 130, but on its diastolic component
    assert await ids(fhir_http, "/Observation", **{search: f"{LOINC}|{DIASTOLIC}$gt130"}) == ["odd"]
    assert await ids(fhir_http, "/Observation", **{search: f"{SYSTOLIC}$lt100"}) == ["odd"]
    found = await ids(fhir_http, "/Observation", **{search: f"{SYSTOLIC}$gt140,{DIASTOLIC}$gt130"})
    assert found == ["high", "odd"]
    found = await ids(fhir_http, "/Observation", **{search: f"{SYSTOLIC}$118|{UCUM}|mm[Hg]"})
    assert found == ["normal"]
    assert await ids(fhir_http, "/Observation", **{search: f"|{SYSTOLIC}$118"}) == []


async def test_code_value_and_combo_parameters(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await ids(fhir_http, "/Observation", **{"code-value-quantity": f"{LOINC}|29463-7$gt80"})
    assert found == ["weight"]
    assert await ids(fhir_http, "/Observation", **{"code-value-quantity": "29463-7$lt80"}) == []
    concept = f"{LOINC}|72166-2$http://snomed.info/sct|8517006"
    assert await ids(fhir_http, "/Observation", **{"code-value-concept": concept}) == ["smoker"]
    combo = "combo-code-value-quantity"
    assert await ids(fhir_http, "/Observation", **{combo: "29463-7$gt80"}) == ["weight"]
    assert await ids(fhir_http, "/Observation", **{combo: f"{SYSTOLIC}$gt130"}) == ["high"]


async def test_bad_composite_values_are_refused_naming_the_parameter(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    for name, value in (
        ("code-value-quantity", "29463-7"),
        ("code-value-quantity", "29463-7$abc"),
        ("code-value-quantity", f"{LOINC}|$gt80"),
        ("code-value-quantity:missing", "true"),
    ):
        response = await fhir_http.get("/Observation", params={name: value})
        assert response.status_code in (400, 501), response.text
        assert response.json()["issue"][0]["expression"] == [name]


async def test_component_values_on_synthea_match_the_raw_bundles(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    names = (
        "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2",
        "8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2",
    )
    await store.transaction(synthea("0-hospitalInformation1625911868739.json.bz2"))
    await store.transaction(synthea("0-practitionerInformation1625911868739.json.bz2"))
    for name in names:
        await store.transaction(synthea(name))
    raw = [e["resource"] for name in names for e in synthea(name)["entry"]]
    panels = [r for r in raw if r["resourceType"] == "Observation" and "component" in r]

    def component_values(observation: dict[str, Any], code: str) -> list[float]:
        return [
            component["valueQuantity"]["value"]
            for component in observation["component"]
            if any(c["code"] == code for c in component["code"]["coding"])
            and "valueQuantity" in component
        ]

    for code, threshold in ((SYSTOLIC, 120), (DIASTOLIC, 80)):
        expected = [p for p in panels if any(v > threshold for v in component_values(p, code))]
        assert 0 < len(expected) < len(panels)
        found = await ids(
            fhir_http,
            "/Observation",
            **{"component-code-value-quantity": f"{LOINC}|{code}$gt{threshold}"},
        )
        assert len(found) == len(expected)
        # the issued instants identify the panels independently of the ids the store gave them
        entries = [(await fhir_http.get(f"/Observation/{i}")).json() for i in found]
        assert sorted(e["issued"] for e in entries) == sorted(p["issued"] for p in expected)
