"""Search modifiers: token :text and :of-type, reference :identifier, uri :above and :below,
the refusal of terminology modifiers, and the other modifiers on every type they apply to.

Small inline resources pin the semantics; Synthea answers (shared/data/fhir/synthea,
samply/blaze, Apache-2.0) are computed here from the raw bundles.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fhir_store import FhirStore
from tests.fhir_store.conftest import every_entry

pytestmark = pytest.mark.anyio

Loader = Callable[[str], dict[str, Any]]
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
SMALL_BUNDLES = (
    "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2",
    "8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2",
)


async def entries(http: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    """Every match entry of a search, following next links."""
    return [e for e in await every_entry(http, path, params) if e["search"]["mode"] == "match"]


async def ids(http: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    return sorted(e["resource"]["id"] for e in await entries(http, path, **params))


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


@pytest.fixture
async def small(store: FhirStore) -> FhirStore:
    await store.update(
        "Patient",
        "p1",
        {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [
                {
                    "type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Chart"},
                    "system": "urn:hospital",
                    "value": "12345",
                },
                {"type": {"coding": [{"system": V2_0203, "code": "SS"}]}, "value": "999"},
            ],
            "communication": [{"language": {"coding": [{"code": "en", "display": "English"}]}}],
        },
    )
    await store.update(
        "Patient",
        "p2",
        {
            "resourceType": "Patient",
            "id": "p2",
            "identifier": [
                {"type": {"coding": [{"system": V2_0203, "code": "SS"}]}, "value": "12345"}
            ],
            "communication": [{"language": {"text": "Old English"}}],
        },
    )
    await store.update(
        "Observation",
        "o1",
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"identifier": {"system": "urn:hospital", "value": "12345"}},
        },
    )
    await store.update(
        "Observation",
        "o2",
        {
            "resourceType": "Observation",
            "id": "o2",
            "status": "final",
            "code": {"text": "Pulse", "coding": [{"system": LOINC, "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"},
        },
    )
    for number, url in enumerate(
        (
            "http://acme.org/fhir/ValueSet/123",
            "http://acme.org/fhir",
            "http://acme.org/fhirx/ValueSet/9",
            "http://other.org/fhir/ValueSet/123",
        )
    ):
        await store.update(
            "ValueSet",
            f"v{number}",
            {"resourceType": "ValueSet", "id": f"v{number}", "status": "active", "url": url},
        )
    return store


async def test_token_text_matches_text_and_displays_by_start_ignoring_case(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await ids(fhir_http, "/Observation", **{"code:text": "heart"}) == ["o1"]
    assert await ids(fhir_http, "/Observation", **{"code:text": "PULSE"}) == ["o2"]
    assert await ids(fhir_http, "/Observation", **{"code:text": "heart,pulse"}) == ["o1", "o2"]
    assert await ids(fhir_http, "/Observation", **{"code:text": "rate"}) == []
    assert await ids(fhir_http, "/Patient", **{"language:text": "english"}) == ["p1"]
    assert await ids(fhir_http, "/Patient", **{"identifier:text": "chart"}) == ["p1"]


async def test_identifier_of_type_needs_the_type_and_the_value_on_one_identifier(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await ids(fhir_http, "/Patient", **{"identifier:of-type": f"{V2_0203}|MR|12345"})
    assert found == ["p1"]
    found = await ids(fhir_http, "/Patient", **{"identifier:of-type": f"{V2_0203}|SS|12345"})
    assert found == ["p2"]  # p1 has an SS identifier and a 12345 value, on different ones
    response = await fhir_http.get("/Patient", params={"identifier:of-type": "MR|12345"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["identifier:of-type"]


async def test_reference_identifier_matches_logical_references(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await ids(fhir_http, "/Observation", **{"subject:identifier": "urn:hospital|12345"})
    assert found == ["o1"]
    assert await ids(fhir_http, "/Observation", **{"subject:identifier": "12345"}) == ["o1"]
    assert await ids(fhir_http, "/Observation", **{"subject:identifier": "urn:other|12345"}) == []


async def test_uri_below_and_above_go_by_whole_path_segments(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await ids(fhir_http, "/ValueSet", **{"url:below": "http://acme.org/fhir"}) == [
        "v0",
        "v1",
    ]
    above = await ids(
        fhir_http, "/ValueSet", **{"url:above": "http://acme.org/fhir/ValueSet/123/_history/5"}
    )
    assert above == ["v0", "v1"]
    assert await ids(fhir_http, "/ValueSet", url="http://acme.org/fhir") == ["v1"]


async def test_terminology_modifiers_are_refused_with_a_reason(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    for modifier in ("in", "not-in", "above", "below"):
        name = f"code:{modifier}"
        response = await fhir_http.get("/Observation", params={name: "http://vs.org/heart"})
        assert response.status_code in (400, 501), response.text
        issue = response.json()["issue"][0]
        assert issue["expression"] == [name]
        assert "terminology" in issue["diagnostics"]


async def test_every_modifier_on_every_type_it_applies_to(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    cases: list[tuple[str, str, str, list[str]]] = [
        ("/Patient", "identifier:missing", "true", []),
        ("/Observation", "subject:missing", "false", ["o1", "o2"]),  # o1: identifier only
        ("/ValueSet", "url:missing", "false", ["v0", "v1", "v2", "v3"]),
        ("/Observation", "code:not", f"{LOINC}|8867-4", []),
        ("/Patient", "language:not", "en", ["p2"]),
        ("/ValueSet", "status:not", "active", []),
        ("/Observation", "subject:Patient", "p1", ["o2"]),
        ("/Observation", "subject:Group", "p1", []),
    ]
    for path, name, value, expected in cases:
        assert await ids(fhir_http, path, **{name: value}) == expected, name


async def test_text_and_of_type_on_synthea_match_the_raw_bundles(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles = [synthea(name) for name in SMALL_BUNDLES]
    await store.transaction(synthea("0-hospitalInformation1625911868739.json.bz2"))
    await store.transaction(synthea("0-practitionerInformation1625911868739.json.bz2"))
    for name in SMALL_BUNDLES:
        await store.transaction(synthea(name))
    raw = [entry["resource"] for bundle in bundles for entry in bundle["entry"]]
    observations = [r for r in raw if r["resourceType"] == "Observation"]

    def texts(concept: dict[str, Any]) -> list[str]:
        return [concept.get("text", "")] + [c.get("display", "") for c in concept["coding"]]

    prefix = "body"
    expected = [
        o for o in observations if any(fold(t).startswith(prefix) for t in texts(o["code"]))
    ]
    found = await entries(fhir_http, "/Observation", **{"code:text": prefix.upper()})
    assert 0 < len(found) == len(expected)
    assert sorted(e["resource"]["code"]["coding"][0]["code"] for e in found) == sorted(
        o["code"]["coding"][0]["code"] for o in expected
    )

    patients = [r for r in raw if r["resourceType"] == "Patient"]
    medical_records = [
        (coding["system"], coding["code"], identifier["value"])
        for patient in patients
        for identifier in patient["identifier"]
        for coding in identifier.get("type", {}).get("coding", [])
        if coding["code"] == "MR"
    ]
    assert len(medical_records) == len(patients)
    for system, code, value in medical_records:
        found = await entries(
            fhir_http, "/Patient", **{"identifier:of-type": f"{system}|{code}|{value}"}
        )
        assert [e["resource"]["identifier"] for e in found] == [
            p["identifier"] for p in patients if value in [i["value"] for i in p["identifier"]]
        ]
