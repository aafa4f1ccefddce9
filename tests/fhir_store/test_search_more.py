"""Search modifiers and result parameters: :missing, :not, _sort, _include, _revinclude,
_summary=count and _elements.

Small inline resources pin the semantics; answers on Synthea bundles (shared/data/fhir/synthea,
samply/blaze, Apache-2.0) are checked against values computed here from the raw bundles.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

from fhir_store import FhirStore
from tests.fhir_store.conftest import every_entry

LOINC = "http://loinc.org"
SMALL_BUNDLES = (
    "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2",
    "8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2",
    "6c8f3e83-c351-ed33-c38d-6be101c275d2.json.bz2",
)

pytestmark = pytest.mark.anyio

Loader = Callable[[str], dict[str, Any]]


async def load_synthea(store: FhirStore, synthea: Loader) -> list[dict[str, Any]]:
    """Load the hospital and practitioner batches and three small patient bundles; return the
    patient bundles as read from the files (the store changes the ones it is given)."""
    await store.transaction(synthea("0-hospitalInformation1625911868739.json.bz2"))
    await store.transaction(synthea("0-practitionerInformation1625911868739.json.bz2"))
    for name in SMALL_BUNDLES:
        await store.transaction(synthea(name))
    return [synthea(name) for name in SMALL_BUNDLES]


def resources(bundles: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [
        entry["resource"]
        for bundle in bundles
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


async def entries(http: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    """Every entry of a search, following next links."""
    return await every_entry(http, path, params)


async def matches(http: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    """The ids of the matches, in the order the server gave them."""
    found = await entries(http, path, **params)
    return [e["resource"]["id"] for e in found if e["search"]["mode"] == "match"]


async def ids(http: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    return sorted(await matches(http, path, **params))


def fold(text: str) -> str:
    """Lower case without accents, as string search compares."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()


def patient(resource_id: str, family: str | None, **elements: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id, **elements}
    if family is not None:
        resource["name"] = [{"family": family, "given": ["Ann"]}]
    return resource


def observation(
    resource_id: str, subject: str, value: float | None, effective: str | None, code: str
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject},
    }
    if effective is not None:
        resource["effectiveDateTime"] = effective
    if value is not None:
        resource["valueQuantity"] = {
            "value": value,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        }
    return resource


@pytest.fixture
async def small(store: FhirStore) -> FhirStore:
    """Patients with and without names, genders and birth dates; observations on them."""
    await store.update(
        "Patient", "p1", patient("p1", "Baker", gender="male", birthDate="1980-05-17")
    )
    await store.update("Patient", "p2", patient("p2", "adams", gender="female", birthDate="1980"))
    await store.update("Patient", "p3", patient("p3", "Carter", gender="male"))
    await store.update("Patient", "p4", patient("p4", None, birthDate="1990-01-01"))
    await store.update(
        "Observation", "o1", observation("o1", "Patient/p1", 60, "2024-03-01T08:00:00Z", "8867-4")
    )
    await store.update(
        "Observation", "o2", observation("o2", "Patient/p2", 100, "2024-03-03", "8867-4")
    )
    await store.update(
        "Observation", "o3", observation("o3", "Patient/p1", None, "2024-03", "9279-1")
    )
    await store.update("Observation", "o4", observation("o4", "Patient/p3", 80, None, "9279-1"))
    return store


# :missing and :not


async def test_missing_true_finds_resources_without_the_element_for_every_type(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    cases = [
        ("/Patient", "gender", ["p4"], ["p1", "p2", "p3"]),  # token
        ("/Patient", "family", ["p4"], ["p1", "p2", "p3"]),  # string
        ("/Patient", "birthdate", ["p3"], ["p1", "p2", "p4"]),  # date
        ("/Observation", "value-quantity", ["o3"], ["o1", "o2", "o4"]),  # quantity
        ("/Observation", "date", ["o4"], ["o1", "o2", "o3"]),  # date
        ("/Observation", "subject", [], ["o1", "o2", "o3", "o4"]),  # reference
        ("/Patient", "general-practitioner", ["p1", "p2", "p3", "p4"], []),  # reference
    ]
    for path, code, missing, present in cases:
        assert await ids(fhir_http, path, **{f"{code}:missing": "true"}) == missing, code
        assert await ids(fhir_http, path, **{f"{code}:missing": "false"}) == present, code


async def test_missing_combines_with_other_parameters(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await ids(fhir_http, "/Patient", gender="male", **{"birthdate:missing": "false"})
    assert found == ["p1"]


async def test_missing_needs_true_or_false(small: FhirStore, fhir_http: httpx.AsyncClient) -> None:
    response = await fhir_http.get("/Patient", params={"gender:missing": "maybe"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["gender:missing"]


async def test_token_not_includes_resources_without_the_element(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await ids(fhir_http, "/Patient", **{"gender:not": "male"}) == ["p2", "p4"]
    assert await ids(fhir_http, "/Patient", **{"gender:not": "male,female"}) == ["p4"]
    found = await ids(fhir_http, "/Observation", **{"code:not": f"{LOINC}|8867-4"})
    assert found == ["o3", "o4"]
    assert await ids(fhir_http, "/Observation", **{"code:not": "http://other|8867-4"}) == [
        "o1",
        "o2",
        "o3",
        "o4",
    ]


async def test_not_and_missing_on_synthea_match_the_raw_bundles(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles = await load_synthea(store, synthea)
    conditions = resources(bundles, "Condition")
    # the store gives the transaction's resources new ids: compare onsets
    expected = sorted(c["onsetDateTime"] for c in conditions if "abatementDateTime" not in c)
    found = await entries(fhir_http, "/Condition", **{"abatement-date:missing": "true"})
    assert sorted(e["resource"]["onsetDateTime"] for e in found) == expected
    assert 0 < len(expected) < len(conditions)
    observations = resources(bundles, "Observation")
    statuses = {o["status"] for o in observations}
    status = sorted(statuses)[0]
    found = await entries(fhir_http, "/Observation", **{"status:not": status})
    assert len(found) == sum(o["status"] != status for o in observations)


# _sort


async def test_sort_by_string_token_and_date_with_missing_values_last(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await matches(fhir_http, "/Patient", _sort="family") == ["p2", "p1", "p3", "p4"]
    assert await matches(fhir_http, "/Patient", _sort="-family") == ["p3", "p1", "p2", "p4"]
    # ascending by the low bound: 1980 starts before 1980-05-17
    assert await matches(fhir_http, "/Patient", _sort="birthdate") == ["p2", "p1", "p4", "p3"]
    # descending by the high bound: 1980 ends after 1980-05-17
    assert await matches(fhir_http, "/Patient", _sort="-birthdate") == ["p4", "p2", "p1", "p3"]
    assert await matches(fhir_http, "/Patient", _sort="gender,-birthdate") == [
        "p2",
        "p1",
        "p3",
        "p4",
    ]
    assert await matches(fhir_http, "/Patient", _sort="-gender,family") == ["p1", "p3", "p2", "p4"]
    assert await matches(fhir_http, "/Observation", _sort="date") == ["o3", "o1", "o2", "o4"]
    assert await matches(fhir_http, "/Observation", _sort="-date") == ["o3", "o2", "o1", "o4"]
    assert await matches(fhir_http, "/Observation", _sort="-code,-date") == [
        "o3",
        "o4",
        "o2",
        "o1",
    ]


async def test_sort_by_quantity_number_id_and_last_updated(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await matches(fhir_http, "/Observation", _sort="value-quantity")
    assert found == ["o1", "o4", "o2", "o3"]
    found = await matches(fhir_http, "/Observation", _sort="-value-quantity")
    assert found == ["o2", "o4", "o1", "o3"]
    assert await matches(fhir_http, "/Patient", _sort="-_id") == ["p4", "p3", "p2", "p1"]
    await small.update("Patient", "p2", patient("p2", "adams", gender="female"))
    # lastUpdated has whole seconds: expect ties, broken by id ascending in both directions
    served = [e["resource"] for e in await entries(fhir_http, "/Patient", _sort="_lastUpdated")]
    moments = {r["id"]: datetime.fromisoformat(r["meta"]["lastUpdated"]) for r in served}
    assert [r["id"] for r in served] == sorted(moments, key=lambda i: (moments[i], i))
    found = await matches(fhir_http, "/Patient", _sort="-_lastUpdated")
    assert found == sorted(moments, key=lambda i: (-moments[i].timestamp(), i))
    for resource_id, probability in (("r1", 0.7), ("r2", None), ("r3", 0.2)):
        risk: dict[str, Any] = {
            "resourceType": "RiskAssessment",
            "id": resource_id,
            "status": "final",
            "subject": {"reference": "Patient/p1"},
        }
        if probability is not None:
            risk["prediction"] = [{"probabilityDecimal": probability}]
        await small.update("RiskAssessment", resource_id, risk)
    assert await matches(fhir_http, "/RiskAssessment", _sort="probability") == ["r3", "r1", "r2"]
    assert await matches(fhir_http, "/RiskAssessment", _sort="-probability") == ["r1", "r3", "r2"]


async def test_sort_ties_break_by_id_across_pages(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await matches(fhir_http, "/Patient", _sort="gender", _count="1")
    assert found == ["p2", "p1", "p3", "p4"]


@pytest.mark.parametrize("value", ["shoe-size", "-subject", "link"])
async def test_sort_on_an_unknown_or_unsortable_parameter_is_refused(
    small: FhirStore, fhir_http: httpx.AsyncClient, value: str
) -> None:
    path = "/Observation" if value == "-subject" else "/Patient"
    response = await fhir_http.get(path, params={"_sort": value})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_sort"]


async def test_sort_on_synthea_observations_follows_the_raw_dates_across_pages(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles = await load_synthea(store, synthea)
    observations = resources(bundles, "Observation")
    moments = sorted(datetime.fromisoformat(o["effectiveDateTime"]) for o in observations)
    found = await entries(fhir_http, "/Observation", _sort="date", _count="97")
    assert [datetime.fromisoformat(e["resource"]["effectiveDateTime"]) for e in found] == moments
    found = await entries(fhir_http, "/Observation", _sort="-date", _count="97")
    served = [datetime.fromisoformat(e["resource"]["effectiveDateTime"]) for e in found]
    assert served == moments[::-1]
    patients = resources(bundles, "Patient")
    families = sorted(min(fold(n["family"]) for n in p["name"]) for p in patients)
    found = await entries(fhir_http, "/Patient", _sort="family")
    assert [min(fold(n["family"]) for n in e["resource"]["name"]) for e in found] == families


# _include and _revinclude


def by_mode(found: list[dict[str, Any]], mode: str) -> list[str]:
    return sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in found
        if e["search"]["mode"] == mode
    )


async def test_include_adds_referenced_resources_as_include_entries(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await entries(
        fhir_http, "/Observation", code="8867-4", _include="Observation:subject", _total="accurate"
    )
    assert by_mode(found, "match") == ["Observation/o1", "Observation/o2"]
    assert by_mode(found, "include") == ["Patient/p1", "Patient/p2"]
    assert all(e["fullUrl"] == f"Patient/{e['resource']['id']}" for e in found[2:])
    found = await entries(fhir_http, "/Observation", _include="Observation:subject:Patient")
    assert by_mode(found, "include") == ["Patient/p1", "Patient/p2", "Patient/p3"]
    found = await entries(fhir_http, "/Observation", _include="Observation:subject:Group")
    assert by_mode(found, "include") == []
    # _include names the searched type; another type's parameter adds nothing
    found = await entries(fhir_http, "/Patient", _include="Observation:subject")
    assert by_mode(found, "include") == []


async def test_included_resources_do_not_count_in_the_total(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    response = await fhir_http.get(
        "/Observation", params={"_include": "Observation:subject", "_count": "1"}
    )
    bundle = response.json()
    assert "total" not in bundle or bundle["total"] == 4
    assert by_mode(bundle["entry"], "match") == ["Observation/o1"]
    assert by_mode(bundle["entry"], "include") == ["Patient/p1"]


async def test_revinclude_adds_resources_that_refer_to_the_matches(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await entries(fhir_http, "/Patient", _id="p1,p4", _revinclude="Observation:subject")
    assert by_mode(found, "match") == ["Patient/p1", "Patient/p4"]
    assert by_mode(found, "include") == ["Observation/o1", "Observation/o3"]
    found = await entries(fhir_http, "/Patient", _id="p1", _revinclude="Observation:subject:Group")
    assert by_mode(found, "include") == []
    await small.delete("Observation", "o3")
    found = await entries(fhir_http, "/Patient", _id="p1", _revinclude="Observation:patient")
    assert by_mode(found, "include") == ["Observation/o1"]


async def test_iterate_follows_includes_from_included_resources(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    params = {"_id": "o1", "_include": "Observation:subject"}
    found = await entries(fhir_http, "/Observation", **params, _revinclude="Observation:subject")
    assert by_mode(found, "include") == ["Patient/p1"]
    iterate = {"_revinclude:iterate": "Observation:subject"}
    found = await entries(fhir_http, "/Observation", **params, **iterate)
    assert by_mode(found, "match") == ["Observation/o1"]
    assert by_mode(found, "include") == ["Observation/o3", "Patient/p1"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_include", "Observation:code"),
        ("_include", "Observation"),
        ("_include", "Nothing:subject"),
        ("_revinclude", "Observation:subject:Nothing"),
        ("_include:deep", "Observation:subject"),
    ],
)
async def test_bad_includes_are_400_naming_the_parameter(
    small: FhirStore, fhir_http: httpx.AsyncClient, name: str, value: str
) -> None:
    response = await fhir_http.get("/Observation", params={name: value})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == [name]


async def test_include_and_revinclude_on_synthea_match_the_raw_references(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles = await load_synthea(store, synthea)
    encounters = resources(bundles, "Encounter")
    found = await entries(
        fhir_http, "/Encounter", _include="Encounter:service-provider", _count="1000"
    )
    assert len(by_mode(found, "match")) == len(encounters)
    providers = {e["serviceProvider"]["reference"] for e in encounters}
    assert len(by_mode(found, "include")) == len(providers)
    assert {e["resource"]["resourceType"] for e in found if e["search"]["mode"] == "include"} == {
        "Organization"
    }
    found = await entries(fhir_http, "/Patient", _revinclude="Encounter:subject", _count="1000")
    assert len(by_mode(found, "match")) == len(bundles)
    assert len(by_mode(found, "include")) == len(encounters)


# _summary=count and _elements

SUBSETTED = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"


async def test_summary_count_gives_the_total_without_entries(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    response = await fhir_http.get("/Patient", params={"gender": "male", "_summary": "count"})
    bundle = response.json()
    assert response.status_code == 200
    assert bundle["type"] == "searchset" and bundle["total"] == 2
    assert "entry" not in bundle
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    response = await fhir_http.get(
        "/Observation",
        params={"_summary": "count", "_count": "1", "_include": "Observation:subject"},
    )
    assert response.json()["total"] == 4 and "entry" not in response.json()


async def test_summary_of_an_unknown_mode_is_refused(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await ids(fhir_http, "/Patient", _summary="false", gender="female") == ["p2"]
    response = await fhir_http.get("/Patient", params={"_summary": "everything"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_summary"]


async def test_elements_keeps_the_listed_elements_id_and_meta_tagged_subsetted(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await entries(
        fhir_http,
        "/Observation",
        _id="o1",
        _elements="status,value",
        _include="Observation:subject",
    )
    [match] = [e["resource"] for e in found if e["search"]["mode"] == "match"]
    assert set(match) == {"resourceType", "id", "meta", "status", "valueQuantity"}
    assert match["meta"]["versionId"] == "1"
    assert {"system": SUBSETTED, "code": "SUBSETTED", "display": "subsetted"} in match["meta"][
        "tag"
    ]
    [patient_entry] = [e["resource"] for e in found if e["search"]["mode"] == "include"]
    assert "name" in patient_entry  # included resources are whole
    found = await entries(fhir_http, "/Patient", _elements="birthDate", _sort="_id")
    assert [set(e["resource"]) for e in found] == [
        {"resourceType", "id", "meta", "birthDate"},
        {"resourceType", "id", "meta", "birthDate"},
        {"resourceType", "id", "meta"},
        {"resourceType", "id", "meta", "birthDate"},
    ]


async def test_elements_must_name_top_level_elements(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    response = await fhir_http.get("/Patient", params={"_elements": "Patient.name.given"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_elements"]


async def test_summary_count_and_elements_on_synthea_match_the_raw_bundles(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles = await load_synthea(store, synthea)
    conditions = resources(bundles, "Condition")
    response = await fhir_http.get("/Condition", params={"_summary": "count"})
    assert response.json()["total"] == len(conditions)
    found = await entries(fhir_http, "/Condition", _elements="code,onset", _count="50")
    assert sorted(
        (e["resource"]["code"]["text"], e["resource"]["onsetDateTime"]) for e in found
    ) == (sorted((c["code"]["text"], c["onsetDateTime"]) for c in conditions))
    assert all(
        set(e["resource"]) == {"resourceType", "id", "meta", "code", "onsetDateTime"} for e in found
    )


async def test_capability_statement_mentions_the_new_modifiers(
    store: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    statement = (await fhir_http.get("/metadata")).json()
    [observation_entry] = [
        r for r in statement["rest"][0]["resource"] if r["type"] == "Observation"
    ]
    documentation = {p["name"]: p["documentation"] for p in observation_entry["searchParam"]}
    assert ":not" in documentation["code"] and ":missing" in documentation["code"]
    assert "_sort" in documentation["date"] and "_sort" in documentation["_lastUpdated"]
    assert "_revinclude" in documentation["subject"]
