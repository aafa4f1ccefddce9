"""`_summary=true|text|data` and `_include=*` / `_revinclude=*`.

The expected summary elements are read here from the R4B models' metadata; the expected
included resources from the resources' own references.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_store import FhirStore

pytestmark = pytest.mark.anyio

NARRATIVE = {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ann</div>'}


def summary_names(resource_type: str) -> set[str]:
    fields = get_fhir_model_class(resource_type).model_fields
    return {
        field.alias or name
        for name, field in fields.items()
        if isinstance(field.json_schema_extra, dict)
        and field.json_schema_extra.get("summary_element_property")
    }


@pytest.fixture
async def small(store: FhirStore) -> FhirStore:
    await store.update("Organization", "org", {"resourceType": "Organization", "id": "org"})
    await store.update(
        "Patient",
        "p1",
        {
            "resourceType": "Patient",
            "id": "p1",
            "text": NARRATIVE,
            "name": [{"family": "Baker"}],
            "gender": "female",
            "_gender": {"extension": [{"url": "http://x.org/e", "valueString": "said so"}]},
            "maritalStatus": {"text": "Married"},
            "managingOrganization": {"reference": "Organization/org"},
        },
    )
    await store.update(
        "Observation",
        "o1",
        {
            "resourceType": "Observation",
            "id": "o1",
            "text": NARRATIVE,
            "status": "final",
            "code": {"text": "Pulse"},
            "subject": {"reference": "Patient/p1"},
            "note": [{"text": "after a walk"}],
        },
    )
    await store.update(
        "Encounter",
        "e1",
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"code": "EMER"},
            "subject": {"reference": "Patient/p1"},
            "serviceProvider": {"reference": "Organization/org"},
        },
    )
    return store


def tagged(resource: dict[str, Any]) -> bool:
    return any(tag["code"] == "SUBSETTED" for tag in resource["meta"].get("tag", []))


async def search(http: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    response = await http.get(path, params=params)
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


async def test_summary_true_keeps_the_summary_elements_tagged_subsetted(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    stored = await small.read("Patient", "p1")
    (patient,) = await search(fhir_http, "/Patient", _summary="true")
    names = summary_names("Patient") | {"resourceType"}
    expected = {key for key in stored if key.removeprefix("_") in names}
    assert set(patient) == expected
    assert "maritalStatus" not in patient and "text" not in patient and "_gender" in patient
    assert tagged(patient)


async def test_summary_text_keeps_text_id_meta_and_mandatory_elements(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    (observation,) = await search(fhir_http, "/Observation", _summary="text")
    assert set(observation) == {"resourceType", "id", "meta", "text", "status", "code"}
    assert tagged(observation)


async def test_summary_data_drops_only_the_text(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    stored = await small.read("Observation", "o1")
    (observation,) = await search(fhir_http, "/Observation", _summary="data")
    assert set(observation) == set(stored) - {"text"}
    assert tagged(observation)
    (untouched,) = await search(fhir_http, "/Observation", _summary="false")
    assert untouched == stored


async def test_include_star_follows_every_reference_parameter(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await search(fhir_http, "/Encounter", _include="*")
    assert sorted((r["resourceType"], r["id"]) for r in found) == [
        ("Encounter", "e1"),
        ("Organization", "org"),
        ("Patient", "p1"),
    ]
    found = await search(fhir_http, "/Encounter", **{"_include": "*", "_include:iterate": "*"})
    assert ("Organization", "org") in [(r["resourceType"], r["id"]) for r in found]


async def test_revinclude_star_finds_every_resource_referring_to_the_matches(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await search(fhir_http, "/Patient", _revinclude="*")
    assert sorted((r["resourceType"], r["id"]) for r in found) == [
        ("Encounter", "e1"),
        ("Observation", "o1"),
        ("Patient", "p1"),
    ]
    found = await search(fhir_http, "/Organization", _revinclude="*")
    assert sorted((r["resourceType"], r["id"]) for r in found) == [
        ("Encounter", "e1"),
        ("Organization", "org"),
        ("Patient", "p1"),
    ]
