"""Patient compartment search (`Patient/1/Observation`, `Patient/1/*`) and `$everything`,
driven by the official Patient CompartmentDefinition.

Small inline resources pin the semantics and the errors; on Synthea bundles
(shared/data/fhir/synthea, samply/blaze, Apache-2.0) the answers are checked against membership
computed here from the raw bundles, with the element paths of the compartment's parameters
written out by hand from the R4 specification.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_store import FhirStore
from fhir_store._compartment import compartment_params
from fhir_store._everything import parse_everything
from fhir_store._search import parse_search

LOINC = "http://loinc.org"
SMALL_BUNDLES = (
    "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2",
    "8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2",
    "6c8f3e83-c351-ed33-c38d-6be101c275d2.json.bz2",
)
# The elements behind the Patient compartment's parameters, for the types in the Synthea
# bundles (R4 search parameter expressions, read by hand).
PATHS: dict[str, dict[str, tuple[str, ...]]] = {
    "Patient": {"link": ("link", "other")},
    "Encounter": {"subject": ("subject",)},
    "Observation": {"subject": ("subject",), "performer": ("performer",)},
    "Procedure": {"patient": ("subject",), "performer": ("performer", "actor")},
    "Immunization": {"patient": ("patient",)},
    "DiagnosticReport": {"subject": ("subject",)},
    "DocumentReference": {"subject": ("subject",), "author": ("author",)},
    "Claim": {"patient": ("patient",), "payee": ("payee", "party")},
    "ExplanationOfBenefit": {"patient": ("patient",), "payee": ("payee", "party")},
    "Provenance": {"patient": ("target",)},
    "Condition": {"patient": ("subject",), "asserter": ("asserter",)},
    "CareTeam": {"patient": ("subject",), "participant": ("participant", "member")},
    "CarePlan": {"patient": ("subject",), "performer": ("activity", "detail", "performer")},
    "MedicationRequest": {"subject": ("subject",)},
    "AllergyIntolerance": {
        "patient": ("patient",),
        "recorder": ("recorder",),
        "asserter": ("asserter",),
    },
}

pytestmark = pytest.mark.anyio

Loader = Callable[[str], dict[str, Any]]
Key = tuple[str, str]


async def bundles_of(http: httpx.AsyncClient, path: str, **params: str) -> list[dict[str, Any]]:
    """Every page of a search, following next links."""
    pages: list[dict[str, Any]] = []
    response = await http.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        following = [link["url"] for link in pages[-1]["link"] if link["relation"] == "next"]
        if not following:
            return pages
        response = await http.get(following[0])


async def keys(http: httpx.AsyncClient, path: str, **params: str) -> list[Key]:
    """(type, id) of every match, in the order given."""
    return [
        (e["resource"]["resourceType"], e["resource"]["id"])
        for page in await bundles_of(http, path, **params)
        for e in page.get("entry", [])
        if e["search"]["mode"] == "match"
    ]


async def ids(http: httpx.AsyncClient, path: str, **params: str) -> list[str]:
    return sorted(resource_id for _, resource_id in await keys(http, path, **params))


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


SMALL: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "Acme Hospital"},
    {"resourceType": "Location", "id": "loc1", "name": "Resus 1"},
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]},
    {"resourceType": "Medication", "id": "m1", "code": {"text": "aspirin"}},
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"family": "Baker"}],
        "managingOrganization": ref("Organization/org1"),
    },
    # p2 is linked to p1: in p1's compartment through Patient.link
    {
        "resourceType": "Patient",
        "id": "p2",
        "link": [{"other": ref("Patient/p1"), "type": "seealso"}],
    },
    {"resourceType": "Patient", "id": "p3", "name": [{"family": "Carter"}]},
    {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": ref("Patient/p1"),
        "performer": [ref("Practitioner/dr1")],
    },
    # about p3, but performed by p1 (self-reported): in p1's compartment through `performer`
    {
        "resourceType": "Observation",
        "id": "o2",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "9279-1"}]},
        "subject": ref("Patient/p3"),
        "performer": [ref("Patient/p1")],
    },
    {
        "resourceType": "Observation",
        "id": "o3",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8867-4"}]},
        "subject": ref("Patient/p3"),
    },
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "EMER"},
        "subject": ref("Patient/p1"),
        "serviceProvider": ref("Organization/org1"),
        "location": [{"location": ref("Location/loc1")}],
    },
    {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": ref("Patient/p1"),
        "medicationReference": ref("Medication/m1"),
        "requester": ref("Practitioner/dr1"),
    },
    # a Device names its patient, but the definition puts no Device in a Patient compartment
    {"resourceType": "Device", "id": "d1", "patient": ref("Patient/p1")},
]
P1_COMPARTMENT = [
    ("Encounter", "e1"),
    ("MedicationRequest", "mr1"),
    ("Observation", "o1"),
    ("Observation", "o2"),
    ("Patient", "p1"),
    ("Patient", "p2"),
]


@pytest.fixture
async def small(store: FhirStore) -> FhirStore:
    for resource in SMALL:
        await store.update(resource["resourceType"], resource["id"], resource)
    return store


# Compartment search


async def test_compartment_search_finds_resources_referring_to_the_patient_by_any_listed_param(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await ids(fhir_http, "/Patient/p1/Observation") == ["o1", "o2"]
    assert await ids(fhir_http, "/Patient/p3/Observation") == ["o2", "o3"]  # o2 by subject
    assert await ids(fhir_http, "/Patient/p1/Encounter") == ["e1"]
    assert await ids(fhir_http, "/Patient/p1/Patient") == ["p1", "p2"]
    assert await ids(fhir_http, "/Patient/nobody/Observation") == []


async def test_compartment_search_combines_with_other_parameters(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await ids(fhir_http, "/Patient/p1/Observation", code="9279-1") == ["o2"]
    assert await ids(fhir_http, "/Patient/p3/Observation", code="8867-4") == ["o3"]
    assert await ids(fhir_http, "/Patient/p1/Observation", **{"performer:Practitioner": "dr1"}) == [
        "o1"
    ]
    assert await ids(
        fhir_http, "/Patient/p1/Observation", **{"subject:Patient.name": "carter"}
    ) == ["o2"]
    [page] = await bundles_of(
        fhir_http, "/Patient/p1/Observation", _include="Observation:performer", _sort="-_id"
    )
    assert [(e["resource"]["id"], e["search"]["mode"]) for e in page["entry"]][:2] == [
        ("o2", "match"),
        ("o1", "match"),
    ]
    included = {(e["resource"]["id"], e["search"]["mode"]) for e in page["entry"][2:]}
    assert included == {("dr1", "include"), ("p1", "include")}
    assert page["total"] == 2


async def test_compartment_search_through_the_store_api(small: FhirStore) -> None:
    query = parse_search("Observation", [("code", "8867-4")], strict=True)
    page = await small.search_compartment("Patient", "p1", query)
    assert [json.loads(content)["id"] for content in page.contents] == ["o1"]
    assert len(query.conditions) == 1
    assert len((await small.search(query)).contents) == 2  # the query itself is unchanged


@pytest.mark.parametrize(
    ("path", "status", "expression", "reason"),
    [
        ("/Patient/p1/Practitioner", 400, "Practitioner", "never in a Patient compartment"),
        ("/Patient/p1/Device", 400, "Device", "never in a Patient compartment"),
        ("/Encounter/e1/Observation", 400, "Encounter", "only the Patient compartment"),
        ("/Patient/p1/Observaton", 404, "resourceType", "unknown resource type"),
    ],
)
async def test_compartments_that_cannot_be_searched_are_refused(
    small: FhirStore,
    fhir_http: httpx.AsyncClient,
    path: str,
    status: int,
    expression: str,
    reason: str,
) -> None:
    response = await fhir_http.get(path)
    assert response.status_code == status, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [expression]
    assert reason in issue["diagnostics"]


async def test_history_and_read_routes_still_win_over_compartment_routes(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    history = await fhir_http.get("/Patient/p1/_history")
    assert history.status_code == 200
    assert history.json()["type"] == "history"
    assert (await fhir_http.get("/Patient/p1/_history/1")).json()["id"] == "p1"
    assert (await fhir_http.get("/Patient/p1")).json()["id"] == "p1"


async def test_star_lists_the_whole_compartment(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert sorted(await keys(fhir_http, "/Patient/p1/*")) == P1_COMPARTMENT
    observations = await keys(fhir_http, "/Patient/p1/*", _type="Observation")
    assert observations == [("Observation", "o1"), ("Observation", "o2")]


def test_every_parameter_of_the_definition_is_a_reference_parameter_served(
    shared_data: Path,
) -> None:
    raw = json.loads((shared_data / "fhir" / "compartmentdefinition-patient.json").read_text())
    listed = {entry["code"]: tuple(entry["param"]) for entry in raw["resource"] if "param" in entry}
    assert compartment_params("Patient") == listed
    assert len(listed) > 60


# $everything


async def test_everything_is_the_patient_its_compartment_and_what_they_refer_to(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await keys(fhir_http, "/Patient/p1/$everything")
    assert found[0] == ("Patient", "p1")  # the patient first
    referred = [
        ("Location", "loc1"),
        ("Medication", "m1"),
        ("Organization", "org1"),
        ("Practitioner", "dr1"),
    ]
    # not d1 (a Device is never in the compartment), not o3 (about p3 only), and not p3,
    # although o2 refers to it: other patients are not part of this patient's record
    assert sorted(found) == sorted(P1_COMPARTMENT + referred)
    [page] = await bundles_of(fhir_http, "/Patient/p1/$everything")
    assert page["type"] == "searchset"
    assert page["total"] == len(found)


async def test_everything_pages_with_count_and_filters_by_type_and_since(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    everything = await keys(fhir_http, "/Patient/p1/$everything")
    pages = await bundles_of(fhir_http, "/Patient/p1/$everything", _count="3")
    assert len(pages) == -(-len(everything) // 3)
    paged = [
        (e["resource"]["resourceType"], e["resource"]["id"]) for p in pages for e in p["entry"]
    ]
    assert paged == everything
    assert all(page["total"] == len(everything) for page in pages[1:])
    found = await keys(fhir_http, "/Patient/p1/$everything", _type="Observation,Practitioner")
    assert sorted(found) == [("Observation", "o1"), ("Observation", "o2"), ("Practitioner", "dr1")]
    # lastUpdated has whole seconds: a second apart from the other writes on either side
    await asyncio.sleep(1.1)
    since = datetime.now(UTC).replace(microsecond=0).isoformat()
    await asyncio.sleep(1.1)
    changed = next(r for r in SMALL if r["id"] == "e1")
    await small.update("Encounter", "e1", {**changed, "status": "cancelled"})
    assert await keys(fhir_http, "/Patient/p1/$everything", _since=since) == [("Encounter", "e1")]


async def test_since_includes_what_changed_in_that_very_second(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    changed = next(r for r in SMALL if r["id"] == "e1")
    stored, _ = await small.update("Encounter", "e1", {**changed, "status": "cancelled"})
    since = stored["meta"]["lastUpdated"]
    found = await keys(fhir_http, "/Patient/p1/$everything", _since=since)
    assert ("Encounter", "e1") in found


async def test_everything_of_a_missing_or_deleted_patient(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    missing = await fhir_http.get("/Patient/nobody/$everything")
    assert missing.status_code == 404
    await small.delete("Patient", "p2")
    assert (await fhir_http.get("/Patient/p2/$everything")).status_code == 410
    assert ("Patient", "p2") not in await keys(fhir_http, "/Patient/p1/$everything")


async def test_everything_of_every_patient(small: FhirStore, fhir_http: httpx.AsyncClient) -> None:
    found = await keys(fhir_http, "/Patient/$everything", _count="4")
    expected = [(r["resourceType"], r["id"]) for r in SMALL if r["resourceType"] != "Device"]
    assert sorted(found) == sorted(expected)
    assert [key for key in found if key[0] == "Patient"] == found[:3]


@pytest.mark.parametrize(
    ("name", "value", "status"),
    [("_since", "last week", 400), ("_type", "Observaton", 400), ("_count", "-1", 400)],
)
async def test_bad_everything_parameters_are_400_naming_them(
    small: FhirStore, fhir_http: httpx.AsyncClient, name: str, value: str, status: int
) -> None:
    response = await fhir_http.get("/Patient/p1/$everything", params={name: value})
    assert response.status_code == status
    assert response.json()["issue"][0]["expression"] == [name]


async def test_unsupported_everything_parameters_are_reported_or_refused_when_strict(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    [page] = await bundles_of(fhir_http, "/Patient/p1/$everything", start="2024-01-01")
    [outcome] = [e["resource"] for e in page["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome["issue"][0]["expression"] == ["start"]
    strict = await fhir_http.get(
        "/Patient/p1/$everything",
        params={"start": "2024-01-01"},
        headers={"Prefer": "handling=strict"},
    )
    assert strict.status_code == 400
    query = parse_everything("p1", [("_count", "2")], strict=True)
    result = await small.everything(query)
    assert json.loads(result.contents[0])["id"] == "p1"
    assert result.more and result.total == len(P1_COMPARTMENT) + 4


async def test_capability_statement_tells_of_chains_has_compartments_and_everything(
    fhir_http: httpx.AsyncClient,
) -> None:
    statement = (await fhir_http.get("/metadata")).json()
    [rest] = statement["rest"]
    assert rest["compartment"] == ["http://hl7.org/fhir/CompartmentDefinition/patient"]
    resources = {resource["type"]: resource for resource in rest["resource"]}
    assert resources["Patient"]["operation"] == [
        {
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        }
    ]
    assert "operation" not in resources["Observation"]
    params = {param["name"]: param for param in resources["Observation"]["searchParam"]}
    assert params["_has"]["type"] == "special"
    assert "chaining" in params["subject"]["documentation"]
    assert "chaining" not in params["code"]["documentation"]


# On Synthea, against the raw bundles


async def load_synthea(
    store: FhirStore, synthea: Loader
) -> tuple[list[dict[str, Any]], dict[str, Key]]:
    """Load the hospital and practitioner batches and three patient bundles. Returns the patient
    bundles as read from the files and, per raw reference (fullUrl or conditional reference),
    the (type, id) the store gave the resource, from the transaction responses."""
    stored: dict[str, Key] = {}
    for name in ("hospitalInformation1625911868739", "practitionerInformation1625911868739"):
        raw = synthea(f"0-{name}.json.bz2")
        response = await store.transaction(copy.deepcopy(raw))
        for entry, answer in zip(raw["entry"], response["entry"], strict=True):
            resource = entry["resource"]
            resource_type, resource_id = answer["response"]["location"].split("/")[:2]
            for identifier in resource.get("identifier", []):
                conditional = f"{resource_type}?identifier={identifier['system']}|"
                stored[conditional + identifier["value"]] = (resource_type, resource_id)
    bundles = [synthea(name) for name in SMALL_BUNDLES]
    for raw in bundles:
        response = await store.transaction(copy.deepcopy(raw))
        for entry, answer in zip(raw["entry"], response["entry"], strict=True):
            resource_type, resource_id = answer["response"]["location"].split("/")[:2]
            stored[entry["fullUrl"]] = (resource_type, resource_id)
    return bundles, stored


def references(node: Any, path: tuple[str, ...]) -> list[str]:
    """The reference strings at the end of `path` in a resource."""
    items = node if isinstance(node, list) else [node]
    if not path:
        return [
            item["reference"] for item in items if isinstance(item, dict) and "reference" in item
        ]
    return [
        found
        for item in items
        if isinstance(item, dict) and path[0] in item
        for found in references(item[path[0]], path[1:])
    ]


def all_references(node: Any) -> list[str]:
    """Every reference anywhere in a resource, except into contained resources."""
    if isinstance(node, list):
        return [found for item in node for found in all_references(item)]
    if not isinstance(node, dict):
        return []
    found = [node["reference"]] if isinstance(node.get("reference"), str) else []
    for key, value in node.items():
        if key != "contained":
            found += all_references(value)
    return [reference for reference in found if not reference.startswith("#")]


def compartment_of(bundle: dict[str, Any], patient_url: str) -> set[str]:
    """The fullUrls of the bundle's resources in the patient's compartment, the patient's
    included."""
    listed = compartment_params("Patient")
    members = {patient_url}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        resource_type = resource["resourceType"]
        if resource_type not in listed:
            continue
        # the hand-written paths must cover what the definition lists for the type
        assert set(PATHS[resource_type]) == set(listed[resource_type]), resource_type
        for path in PATHS[resource_type].values():
            if patient_url in references(resource, path):
                members.add(entry["fullUrl"])
    return members


async def test_compartments_and_everything_on_synthea_match_the_raw_bundles(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles, stored = await load_synthea(store, synthea)
    for bundle in bundles:
        patient_url = bundle["entry"][0]["fullUrl"]
        _, patient_id = stored[patient_url]
        members = compartment_of(bundle, patient_url)
        by_url = {entry["fullUrl"]: entry["resource"] for entry in bundle["entry"]}
        member_keys = sorted(stored[url] for url in members)
        for resource_type in sorted({key[0] for key in member_keys}):
            expected = sorted(key[1] for key in member_keys if key[0] == resource_type)
            path = f"/Patient/{patient_id}/{resource_type}"
            assert await ids(fhir_http, path, _count="50") == expected, resource_type
        assert len(member_keys) > 50
        star = sorted(await keys(fhir_http, f"/Patient/{patient_id}/*"))
        assert set(star) - set(member_keys) == set()
        assert set(member_keys) - set(star) == set()
        assert star == member_keys
        referred = {
            stored[reference]
            for url in members
            for reference in all_references(by_url[url])
            if stored[reference][0] != "Patient"
        }
        expected_all = sorted(set(member_keys) | referred)
        found = await keys(fhir_http, f"/Patient/{patient_id}/$everything", _count="100")
        assert found[0] == ("Patient", patient_id)
        assert sorted(found) == expected_all
        assert {"Practitioner", "Organization", "Location"} <= {key[0] for key in referred}
