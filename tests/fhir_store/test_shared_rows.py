"""Parameters that select the same values share index rows (`_search_params.rows_of`):
`phonetic` reads the rows of `name`, `Encounter.patient` the rows of `subject` that refer to a
Patient. Every way of searching by such a parameter answers as its own rows would, on
Synthea bundles (shared/data/fhir/synthea, samply/blaze, Apache-2.0) checked against the
parameter's expression evaluated here on the stored resources, and on small inline resources
where a `subject` refers to something other than a Patient.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from fhir_store import FhirStore
from fhir_store._indexing import normalise, split_reference
from fhir_store._resources import R4_RESOURCE_TYPES
from fhir_store._search_params import rows_of, search_parameter
from tests.fhir_store.conftest import encounter, every_entry
from tests.fhir_store.test_search_chain import load_synthea

pytestmark = pytest.mark.anyio

Loader = Callable[[str], dict[str, Any]]
# (type, parameter, the parameter whose rows hold it)
SHARED = (
    ("Observation", "patient", "subject"),
    ("Encounter", "patient", "subject"),
    ("Encounter", "practitioner", "participant"),
    ("Condition", "patient", "subject"),
    ("Procedure", "patient", "subject"),
    ("DiagnosticReport", "patient", "subject"),
    ("Patient", "phonetic", "name"),
)
MRN = "urn:oid:1.2.36.146.595.217.0.1"


async def ids(http: httpx.AsyncClient, path: str, params: dict[str, str]) -> list[str]:
    found = await every_entry(http, path, params, {"Prefer": "handling=strict"})
    return sorted(e["resource"]["id"] for e in found if e["search"]["mode"] == "match")


def test_the_shared_parameters_of_the_clinical_types() -> None:
    for resource_type, code, holder in SHARED:
        assert rows_of(resource_type, code).code == holder
    assert rows_of("Encounter", "patient").target == "Patient"
    assert rows_of("Patient", "phonetic").target is None
    assert rows_of("Patient", "identifier").code == "identifier"
    assert rows_of("Encounter", "subject").code == "subject"


async def test_shared_parameters_answer_as_their_expressions_on_synthea(
    store: FhirStore, fhir_http: httpx.AsyncClient, synthea: Loader
) -> None:
    await load_synthea(store, synthea)  # the practitioners and hospitals, three patients
    checked = 0
    for resource_type, code, _ in SHARED:
        parameter = search_parameter(resource_type, code)
        assert parameter is not None
        stored = [e["resource"] for e in await every_entry(fhir_http, f"/{resource_type}")]
        assert stored, resource_type
        expected: dict[str, set[str]] = {}
        for resource in stored:
            for value in parameter.values(resource):
                for key in _search_values(parameter.type, value):
                    expected.setdefault(key, set()).add(resource["id"])
        assert expected, (resource_type, code)
        for key, matching in sorted(expected.items())[:6]:
            assert await ids(fhir_http, f"/{resource_type}", {code: key}) == sorted(matching), (
                resource_type,
                code,
                key,
            )
            checked += 1
    assert checked >= 3 * len(SHARED)  # three patients: at least three values each


def _search_values(kind: str, value: Any) -> list[str]:
    """The search values that find `value` (a reference's id, a name's parts' prefixes)."""
    if kind == "reference":
        target = split_reference(value.get("reference", "")) if isinstance(value, dict) else None
        return [target[1]] if target else []
    parts = [value.get("family")] + list(value.get("given", [])) if isinstance(value, dict) else []
    return [normalise(part)[:4] for part in parts if isinstance(part, str) and part]


@pytest.fixture
async def subjects(store: FhirStore) -> FhirStore:
    """Patient x and Group x (the same id); an encounter of each; one encounter that names
    its patient by identifier only, with the type; one whose participant is a practitioner."""
    await store.update(
        "Patient",
        "x",
        {
            "resourceType": "Patient",
            "id": "x",
            "identifier": [{"system": MRN, "value": "A1"}],
            "name": [{"family": "Zhang", "given": ["San"]}],
        },
    )
    await store.update(
        "Group", "x", {"resourceType": "Group", "id": "x", "type": "person", "actual": True}
    )
    await store.update(
        "Practitioner",
        "doc",
        {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Li"}]},
    )
    encounters = {
        "of-patient": {"reference": "Patient/x"},
        "of-group": {"reference": "Group/x"},
        "by-identifier": {"type": "Patient", "identifier": {"system": MRN, "value": "A1"}},
    }
    doctor = [{"individual": {"reference": "Practitioner/doc"}}]
    for encounter_id, subject in encounters.items():
        await store.update(
            "Encounter", encounter_id, encounter(encounter_id, subject, participant=doctor)
        )
    return store


async def test_patient_finds_only_references_to_patients(
    subjects: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    assert await ids(fhir_http, "/Encounter", {"patient": "x"}) == ["of-patient"]
    assert await ids(fhir_http, "/Encounter", {"patient": "Patient/x"}) == ["of-patient"]
    assert await ids(fhir_http, "/Encounter", {"subject": "x"}) == ["of-group", "of-patient"]
    assert await ids(fhir_http, "/Encounter", {"patient:missing": "true"}) == ["of-group"]
    assert await ids(fhir_http, "/Encounter", {"patient:missing": "false"}) == [
        "by-identifier",
        "of-patient",
    ]
    assert await ids(fhir_http, "/Encounter", {"patient:identifier": f"{MRN}|A1"}) == [
        "by-identifier"
    ]
    assert await ids(fhir_http, "/Encounter", {"patient.name": "zhang"}) == ["of-patient"]
    assert await ids(fhir_http, "/Encounter", {"practitioner": "doc"}) == [
        "by-identifier",
        "of-group",
        "of-patient",
    ]
    assert await ids(fhir_http, "/Patient", {"_has:Encounter:patient:status": "finished"}) == ["x"]
    assert await ids(fhir_http, "/Group", {"_has:Encounter:subject:status": "finished"}) == ["x"]
    assert await ids(fhir_http, "/Patient", {"phonetic": "zha"}) == ["x"]
    assert await ids(fhir_http, "/Patient", {"phonetic": "san"}) == ["x"]


async def test_includes_and_compartments_through_shared_rows(
    subjects: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    found = await every_entry(fhir_http, "/Encounter", {"_include": "Encounter:patient"})
    included = sorted(
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in found
        if e["search"]["mode"] == "include"
    )
    assert included == ["Patient/x"]  # not Group/x, which of-group's subject is

    found = await every_entry(
        fhir_http, "/Patient", {"_id": "x", "_revinclude": "Encounter:patient"}
    )
    assert sorted(e["resource"]["id"] for e in found if e["search"]["mode"] == "include") == [
        "of-patient"
    ]
    found = await every_entry(fhir_http, "/Practitioner", {"_revinclude": "Encounter:practitioner"})
    assert len([e for e in found if e["search"]["mode"] == "include"]) == 3

    response = await fhir_http.get("/Patient/x/Encounter")
    assert response.status_code == 200, response.text
    assert sorted(e["resource"]["id"] for e in response.json().get("entry", [])) == ["of-patient"]


async def test_shared_parameters_write_no_rows_of_their_own(subjects: FhirStore) -> None:
    async with subjects.database.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT resource_type, param FROM fhir_reference_index "
                    "UNION ALL SELECT resource_type, param FROM fhir_string_index"
                )
            )
        ).all()
    written = {(resource_type, param) for resource_type, param in rows}
    assert ("Encounter", "subject") in written and ("Patient", "name") in written
    assert not written & {
        ("Encounter", "patient"),
        ("Encounter", "practitioner"),
        ("Patient", "phonetic"),
    }


def name_parameter() -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "url": "http://greenchannel.example/fhir/SearchParameter/patient-family-only",
        "name": "FamilyOnly",
        "status": "active",
        "description": "name searches the family name only",
        "code": "name",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.family",
    }


async def test_a_custom_parameter_replacing_the_holder_gives_the_sharers_their_own_rows(
    subjects: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    created = await fhir_http.post("/SearchParameter", json=name_parameter())
    assert created.status_code == 201, created.text
    assert rows_of("Patient", "phonetic").code == "phonetic"
    response = await fhir_http.post("/Patient/$reindex")
    assert response.status_code == 200, response.text

    assert await ids(fhir_http, "/Patient", {"name": "san"}) == []  # family only now
    assert await ids(fhir_http, "/Patient", {"phonetic": "san"}) == ["x"]  # Patient.name

    # removed: phonetic shares name's rows again, which $reindex writes from Patient.name
    assert (await fhir_http.delete(f"/SearchParameter/{created.json()['id']}")).status_code == 204
    assert rows_of("Patient", "phonetic").code == "name"
    assert (await fhir_http.post("/Patient/$reindex")).status_code == 200
    assert await ids(fhir_http, "/Patient", {"name": "san"}) == ["x"]
    assert await ids(fhir_http, "/Patient", {"phonetic": "san"}) == ["x"]


def test_the_migration_deletes_exactly_the_rows_the_store_no_longer_writes() -> None:
    """f0008's list (fixed when it was written) is what the registry shares today: a change of
    the rules needs a migration of its own, or searches read rows never written."""
    from importlib.util import module_from_spec, spec_from_file_location

    from fhir_store._search_params import parameters_for
    from fhir_store.schema import MIGRATIONS_DIR

    path = MIGRATIONS_DIR / "versions" / "f0008_shared_index_rows.py"
    spec = spec_from_file_location("f0008", path)
    assert spec is not None and spec.loader is not None
    migration = module_from_spec(spec)
    spec.loader.exec_module(migration)
    today = {
        (resource_type, parameter.code, rows.code, rows.target, parameter.type)
        for resource_type in R4_RESOURCE_TYPES
        for parameter in parameters_for(resource_type)
        if (rows := rows_of(resource_type, parameter.code)).code != parameter.code
    }
    assert set(migration.SHARED) == today
