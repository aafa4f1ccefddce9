"""Chained parameters (`subject:Patient.name=`, several links) and reverse chaining (`_has`).

Small inline resources pin the semantics and the errors; answers on Synthea bundles
(shared/data/fhir/synthea, samply/blaze, Apache-2.0) are checked against answers computed here
from the raw bundles, with the ids the store gave each entry read from its transaction response.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, select

from fhir_store import FhirStore, FhirStoreError, InvalidRequest
from fhir_store._search import parse_search
from fhir_store.models import ResourceRow
from tests.fhir_store.conftest import every_entry

LOINC = "http://loinc.org"
MRN = "urn:oid:1.2.36.146.595.217.0.1"
SYNTHEA_ID = "https://github.com/synthetichealth/synthea"
NPI = "http://hl7.org/fhir/sid/us-npi"
SMALL_BUNDLES = (
    "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2",
    "8708d3e1-f718-96bb-03f0-f2a6564ae1cd.json.bz2",
    "6c8f3e83-c351-ed33-c38d-6be101c275d2.json.bz2",
)

pytestmark = pytest.mark.anyio

Loader = Callable[[str], dict[str, Any]]


async def matches(
    http: httpx.AsyncClient, path: str, params: dict[str, str], **headers: str
) -> list[str]:
    """The ids of every match of a search, following next links, sorted."""
    found = await every_entry(http, path, params, headers)
    return sorted(e["resource"]["id"] for e in found if e["search"]["mode"] == "match")


async def refused(http: httpx.AsyncClient, path: str, name: str, value: str) -> str:
    """The diagnostics of a 400 that names `name`."""
    response = await http.get(path, params={name: value})
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["expression"] == [name]
    return str(issue["diagnostics"])


def patient(resource_id: str, family: str, mrn: str, **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": resource_id,
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"family": family, "given": ["Ann"]}],
        **elements,
    }


def observation(resource_id: str, subject: str, code: str, **elements: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": subject},
        **elements,
    }


@pytest.fixture
async def small(store: FhirStore) -> FhirStore:
    """Two organizations; patients in them (p3 in none); observations, encounters and an
    audit event on them; a location and a group that observations also refer to."""
    for org_id, name in (("org1", "Acme Hospital"), ("org2", "Zenith Clinic")):
        await store.update(
            "Organization", org_id, {"resourceType": "Organization", "id": org_id, "name": name}
        )
    await store.update(
        "Patient",
        "p1",
        patient(
            "p1",
            "Baker",
            "A1",
            birthDate="1980-05-17",
            gender="male",
            managingOrganization={"reference": "Organization/org1"},
        ),
    )
    await store.update(
        "Patient",
        "p2",
        patient(
            "p2",
            "Adams",
            "A2",
            birthDate="1990-01-01",
            gender="female",
            managingOrganization={"reference": "Organization/org2"},
        ),
    )
    await store.update("Patient", "p3", patient("p3", "Bakerson", "A3", gender="male"))
    await store.update(
        "Location", "l1", {"resourceType": "Location", "id": "l1", "name": "Baker Street"}
    )
    await store.update("Observation", "o1", observation("o1", "Patient/p1", "8867-4"))
    await store.update("Observation", "o2", observation("o2", "Patient/p2", "8867-4"))
    await store.update("Observation", "o3", observation("o3", "Patient/p3", "9279-1"))
    await store.update("Observation", "o4", observation("o4", "Location/l1", "8867-4"))
    for encounter_id, subject in (("e1", "Patient/p1"), ("e2", "Patient/p2")):
        await store.update(
            "Encounter",
            encounter_id,
            {
                "resourceType": "Encounter",
                "id": encounter_id,
                "status": "finished",
                "class": {"code": "EMER"},
                "subject": {"reference": subject},
            },
        )
    await store.update(
        "AuditEvent",
        "a1",
        {
            "resourceType": "AuditEvent",
            "id": "a1",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "recorded": "2024-03-01T08:00:00Z",
            "agent": [{"requestor": True}],
            "source": {"observer": {"reference": "Organization/org1"}},
            "entity": [{"what": {"reference": "Observation/o2"}}],
        },
    )
    return store


# Chains


async def test_chain_with_a_type_matches_through_the_reference(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await matches(
        fhir_http, "/Observation", {"subject:Patient.identifier": f"{MRN}|A1"}
    ) == ["o1"]
    assert await matches(fhir_http, "/Observation", {"subject:Patient.name": "baker"}) == [
        "o1",
        "o3",
    ]
    # the type modifier keeps out the Location named Baker Street
    assert await matches(fhir_http, "/Observation", {"subject:Location.name": "baker"}) == ["o4"]


async def test_chain_infers_the_type_when_only_one_target_has_the_parameter(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    # Observation.patient refers to Patient only
    assert await matches(fhir_http, "/Observation", {"patient.name": "adams"}) == ["o2"]
    # Encounter.subject refers to a Patient or a Group; only Patient has `birthdate`
    assert await matches(fhir_http, "/Encounter", {"subject.birthdate": "1980"}) == ["e1"]


async def test_ambiguous_chain_is_400_naming_the_parameter_and_the_types(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    # Observation.subject may be a Group, Device, Patient or Location, all with `identifier`
    text = await refused(fhir_http, "/Observation", "subject.identifier", f"{MRN}|A1")
    assert "ambiguous" in text
    assert "Patient" in text and "Location" in text


async def test_chains_of_several_links(small: FhirStore, fhir_http: httpx.AsyncClient) -> None:
    assert await matches(
        fhir_http, "/Encounter", {"subject:Patient.organization.name": "acme"}
    ) == ["e1"]
    assert await matches(
        fhir_http, "/Observation", {"subject:Patient.organization:Organization.name": "zenith"}
    ) == ["o2"]
    assert (
        await matches(fhir_http, "/Observation", {"subject:Patient.organization.name": "nowhere"})
        == []
    )


async def test_every_parameter_type_and_modifier_can_end_a_chain(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    chain = "subject:Patient."
    cases = {
        "name:exact": ("Baker", ["o1"]),
        "name:contains": ("aker", ["o1", "o3"]),
        "name": ("baker,adams", ["o1", "o2", "o3"]),  # OR of values at the end
        "birthdate": ("ge1985", ["o2"]),
        "gender": ("male", ["o1", "o3"]),
        "gender:not": ("male", ["o2"]),
        "birthdate:missing": ("true", ["o3"]),
        "organization": ("Organization/org2", ["o2"]),
        "organization:missing": ("true", ["o3"]),
        "_id": ("p1,p3", ["o1", "o3"]),
    }
    for name, (value, expected) in cases.items():
        assert await matches(fhir_http, "/Observation", {chain + name: value}) == expected, name


async def test_chain_combines_with_other_parameters(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    params = {"subject:Patient.gender": "male", "code": f"{LOINC}|8867-4"}
    assert await matches(fhir_http, "/Observation", params) == ["o1"]


async def test_chain_to_a_deleted_resource_matches_nothing(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    await small.delete("Patient", "p1")
    assert await matches(fhir_http, "/Observation", {"subject:Patient.name": "baker"}) == ["o3"]


@pytest.mark.parametrize(
    ("path", "name", "reason"),
    [
        ("/Observation", "code.name", "not a reference parameter"),
        ("/Observation", "subject:Organization.name", "cannot refer to a Organization"),
        ("/Observation", "subject:Patient.birthdate", "must be a FHIR date"),
        ("/Observation", "subject:Patient.name:sounds-like", "not supported"),
        ("/Observation", "subject:Patient._count", "cannot end a chain"),
        ("/Observation", "subject.", "must be param.param2"),
        ("/Observation", "subject:Foo.name", "cannot refer to a Foo"),
        ("/Observation", "subject._count", "cannot end a chain"),
        ("/Observation", "subject:Patient._has:Observation:patient", "must be _has:Type:"),
    ],
)
async def test_bad_chains_are_400_naming_the_whole_parameter(
    small: FhirStore, fhir_http: httpx.AsyncClient, path: str, name: str, reason: str
) -> None:
    assert reason in await refused(fhir_http, path, name, "x")


@pytest.mark.parametrize(
    ("path", "name", "other", "expected"),
    [
        ("/Observation", "subject:Patient.shoe-size", ("code", "9279-1"), ["o3"]),
        ("/Observation", "subject.shoe-size", ("code", "9279-1"), ["o3"]),
        ("/Patient", "_has:Observation:patient:shoe-size", ("name", "bakerson"), ["p3"]),
    ],
)
async def test_unknown_last_link_is_ignored_and_reported_or_refused_when_strict(
    small: FhirStore,
    fhir_http: httpx.AsyncClient,
    path: str,
    name: str,
    other: tuple[str, str],
    expected: list[str],
) -> None:
    response = await fhir_http.get(path, params={name: "42", other[0]: other[1]})
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == expected
    [outcome] = [e["resource"] for e in entries if e["search"]["mode"] == "outcome"]
    assert outcome["issue"][0]["expression"] == [name]
    strict = await fhir_http.get(path, params={name: "42"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == [name]


# _has


async def test_has_finds_the_resources_referred_to_by_matching_ones(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await matches(fhir_http, "/Patient", {"_has:Observation:patient:code": "8867-4"}) == [
        "p1",
        "p2",
    ]
    assert await matches(
        fhir_http, "/Patient", {"_has:Observation:subject:code": "9279-1,nothing"}
    ) == ["p3"]
    # a Location is referred to by o4 through `subject`, not `patient`
    assert await matches(fhir_http, "/Location", {"_has:Observation:subject:code": "8867-4"}) == [
        "l1"
    ]


async def test_has_combines_with_other_parameters_and_modifiers(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    params = {"_has:Observation:patient:code": "8867-4", "gender": "female"}
    assert await matches(fhir_http, "/Patient", params) == ["p2"]
    params = {"_has:Observation:patient:code:not": "8867-4"}
    assert await matches(fhir_http, "/Patient", params) == ["p3"]
    # two _has parameters are ANDed
    params = {
        "_has:Observation:patient:code": "8867-4",
        "_has:Encounter:subject:status": "finished",
        "name": "baker",
    }
    assert await matches(fhir_http, "/Patient", params) == ["p1"]


async def test_nested_has_and_a_chain_inside_has(
    small: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    # patients with an observation that an audit event is about
    name = "_has:Observation:patient:_has:AuditEvent:entity:type"
    assert await matches(fhir_http, "/Patient", {name: "110110"}) == ["p2"]
    assert await matches(fhir_http, "/Patient", {name: "other"}) == []
    # organizations of patients with an encounter: a chain ending a _has
    name = "_has:Patient:organization:_has:Encounter:subject:status"
    assert await matches(fhir_http, "/Organization", {name: "finished"}) == ["org1", "org2"]
    name = "_has:Encounter:service-provider:subject:Patient.name"
    assert await matches(fhir_http, "/Organization", {name: "baker"}) == []


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("_has:Observation:patient", "must be _has:Type:referenceParam:param"),
        ("_has:Observaton:patient:code", "not an R4 resource type"),
        ("_has:Observation:code:code", "not a reference parameter of Observation"),
        ("_has:Observation:encounter:code", "never refers to a Patient"),
        ("_has:Observation:patient:value-quantity", "must be a decimal number"),
    ],
)
async def test_bad_has_is_400_naming_the_parameter(
    small: FhirStore, fhir_http: httpx.AsyncClient, name: str, reason: str
) -> None:
    assert reason in await refused(fhir_http, "/Patient", name, "high")


async def test_chains_through_the_store_api(small: FhirStore) -> None:
    query = parse_search(
        "Observation", [("subject:Patient.organization.name", "acme")], strict=True
    )
    page = await small.search(query)
    assert [content for content in page.contents if '"id":"o1"' in content] == page.contents
    assert len(page.contents) == 1
    with pytest.raises(InvalidRequest) as raised:
        parse_search("Observation", [("subject.identifier", "x")], strict=False)
    assert raised.value.expression == ["subject.identifier"]


# Any parameter name: a query or an error naming it, never anything else

PIECES = st.sampled_from(
    ["subject", "patient", "Patient", "Observation", "Encounter", "name", "code", "_has",
     "organization", "Organization", "encounter", "identifier", "_id", "_count", "missing",
     "not", "exact", "x", "", ":", ".", ":", "."]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    resource_type=st.sampled_from(["Patient", "Observation", "Encounter", "Organization"]),
    pieces=st.lists(PIECES, min_size=1, max_size=9),
    value=st.sampled_from(["x", "true", "ge2020", "http://loinc.org|8867-4", "Patient/p1", ","]),
    strict=st.booleans(),
)
def test_any_chain_or_has_name_parses_to_sql_or_an_error_naming_it(
    resource_type: str, pieces: list[str], value: str, strict: bool
) -> None:
    name = "".join(pieces)
    if "." not in name and not name.startswith("_has"):
        name += ".name"
    try:
        query = parse_search(resource_type, [(name, value)], strict=strict)
    except FhirStoreError as error:
        assert error.status == 400
        assert error.expression == [name]
        return
    assert len(query.conditions) + len(query.ignored) == 1
    statement = select(ResourceRow.id).where(*query.conditions)
    for url in ("sqlite://", "postgresql+psycopg://"):  # engines that never connect
        assert "SELECT" in str(statement.compile(dialect=create_engine(url).dialect))


# On Synthea, against the raw bundles


async def load_synthea(
    store: FhirStore, synthea: Loader
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Load the hospital and practitioner batches and three patient bundles. Returns the patient
    bundles as read from the files and, per raw reference (fullUrl or conditional reference),
    the id the store gave the resource, from the transaction responses."""
    ids: dict[str, str] = {}
    for name in ("hospitalInformation1625911868739", "practitionerInformation1625911868739"):
        raw = synthea(f"0-{name}.json.bz2")
        response = await store.transaction(copy.deepcopy(raw))
        for entry, answer in zip(raw["entry"], response["entry"], strict=True):
            resource = entry["resource"]
            stored_id = answer["response"]["location"].split("/")[1]
            for identifier in resource.get("identifier", []):
                conditional = f"{resource['resourceType']}?identifier={identifier['system']}|"
                ids[conditional + identifier["value"]] = stored_id
    bundles = [synthea(name) for name in SMALL_BUNDLES]
    for raw in bundles:
        response = await store.transaction(copy.deepcopy(raw))
        for entry, answer in zip(raw["entry"], response["entry"], strict=True):
            ids[entry["fullUrl"]] = answer["response"]["location"].split("/")[1]
    return bundles, ids


def of_type(bundles: list[dict[str, Any]], resource_type: str) -> list[tuple[str, dict[str, Any]]]:
    """(fullUrl, resource) of the entries of a type."""
    return [
        (entry["fullUrl"], entry["resource"])
        for bundle in bundles
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


def codes(resource: dict[str, Any]) -> set[str]:
    return {coding["code"] for coding in resource.get("code", {}).get("coding", [])}


async def test_chains_on_synthea_match_the_raw_bundles(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles, ids = await load_synthea(store, synthea)
    hospital = synthea("0-hospitalInformation1625911868739.json.bz2")
    organization_names = {
        f"Organization?identifier={identifier['system']}|{identifier['value']}": resource["name"]
        for entry in hospital["entry"]
        if (resource := entry["resource"])["resourceType"] == "Organization"
        for identifier in resource.get("identifier", [])
    }
    observations = of_type(bundles, "Observation")
    encounters = dict(of_type(bundles, "Encounter"))
    # one link: the observations of each patient, by the patient's Synthea identifier
    for full_url, raw_patient in of_type(bundles, "Patient"):
        [synthea_id] = [i["value"] for i in raw_patient["identifier"] if i["system"] == SYNTHEA_ID]
        expected = sorted(
            ids[url] for url, o in observations if o["subject"]["reference"] == full_url
        )
        params = {"subject:Patient.identifier": f"{SYNTHEA_ID}|{synthea_id}"}
        assert await matches(fhir_http, "/Observation", params) == expected
        assert len(expected) > 10
    # two links: observations by the name of the organization that provided their encounter
    providers = {
        url: organization_names[encounter["serviceProvider"]["reference"]]
        for url, encounter in encounters.items()
    }
    for name in sorted(set(providers.values())):
        expected = sorted(
            ids[url] for url, o in observations if providers[o["encounter"]["reference"]] == name
        )
        params = {"encounter.service-provider.name:exact": name}
        assert await matches(fhir_http, "/Observation", params) == expected, name


async def test_has_on_synthea_matches_the_raw_bundles(
    store: FhirStore, synthea: Loader, fhir_http: httpx.AsyncClient
) -> None:
    bundles, ids = await load_synthea(store, synthea)
    observations = of_type(bundles, "Observation")
    all_codes = sorted({code for _, o in observations for code in codes(o)})
    for code in all_codes[:: max(1, len(all_codes) // 12)]:
        expected = sorted(
            {ids[o["subject"]["reference"]] for _, o in observations if code in codes(o)}
        )
        params = {"_has:Observation:patient:code": f"{LOINC}|{code}"}
        assert await matches(fhir_http, "/Patient", params) == expected, code
    # nested: the practitioners of encounters during which this code was observed
    encounters = dict(of_type(bundles, "Encounter"))
    code = "8302-2"  # body height, observed at many encounters
    expected = sorted(
        {
            ids[participant["individual"]["reference"]]
            for _, o in observations
            if code in codes(o)
            for participant in encounters[o["encounter"]["reference"]].get("participant", [])
        }
    )
    assert expected
    params = {"_has:Encounter:practitioner:_has:Observation:encounter:code": code}
    assert await matches(fhir_http, "/Practitioner", params) == expected
