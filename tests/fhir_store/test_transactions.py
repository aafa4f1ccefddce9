"""Transaction and batch Bundles: atomicity, reference resolution, conditional entries, Synthea."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fhir_store import FhirStore, FhirStoreError, InvalidResource, NotFound

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"


def transaction(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def patient_entry(mrn: str = "0001", full_url: str = "urn:uuid:p") -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}]},
        "request": {"method": "PUT", "url": f"Patient?identifier={MRN}|{mrn}"},
    }


def encounter_entry(subject: str = "urn:uuid:p", visit: str = "V1") -> dict[str, Any]:
    return {
        "fullUrl": "urn:uuid:e",
        "resource": {
            "resourceType": "Encounter",
            "identifier": [{"system": "urn:visit", "value": visit}],
            "status": "in-progress",
            "class": {"code": "EMER"},
            "subject": {"reference": subject},
        },
        "request": {
            "method": "POST",
            "url": "Encounter",
            "ifNoneExist": f"identifier=urn:visit|{visit}",
        },
    }


async def test_urn_uuid_references_point_to_the_stored_ids(store: FhirStore) -> None:
    result = await store.transaction(transaction(patient_entry(), encounter_entry()))
    assert result["type"] == "transaction-response"
    statuses = [entry["response"]["status"] for entry in result["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    patient_location = result["entry"][0]["response"]["location"]
    assert patient_location.endswith("/_history/1")
    patient_id = patient_location.split("/")[1]
    encounter = (await store.search_identifier("Encounter", "urn:visit|V1"))[0]
    assert encounter["subject"]["reference"] == f"Patient/{patient_id}"


async def test_replaying_a_conditional_transaction_changes_nothing(store: FhirStore) -> None:
    bundle = transaction(patient_entry(), encounter_entry())
    first = await store.transaction(bundle)
    second = await store.transaction(bundle)
    locations = [entry["response"]["location"] for entry in first["entry"]]
    assert [entry["response"]["location"] for entry in second["entry"]] == locations
    assert [entry["response"]["status"] for entry in second["entry"]] == ["200 OK", "200 OK"]
    assert len(await store.search_identifier("Encounter", "urn:visit|V1")) == 1


async def test_a_bad_entry_rolls_back_the_whole_transaction(store: FhirStore) -> None:
    bad = {
        "resource": {"resourceType": "Observation", "id": "x y"},
        "request": {"method": "PUT", "url": "Observation/xy"},
    }
    with pytest.raises(FhirStoreError) as caught:
        await store.transaction(transaction(patient_entry(), encounter_entry(), bad))
    assert "Bundle.entry[2]" in str(caught.value)
    assert caught.value.status == 400
    assert await store.search_identifier("Patient", f"{MRN}|0001") == []
    assert await store.search_identifier("Encounter", "urn:visit|V1") == []


async def test_an_unresolvable_urn_reference_names_the_entry_and_element(store: FhirStore) -> None:
    with pytest.raises(InvalidResource) as caught:
        await store.transaction(transaction(encounter_entry(subject="urn:uuid:missing")))
    assert "Bundle.entry[0]" in caught.value.message
    assert caught.value.expression == ["Encounter.subject"]


async def test_conditional_reference_resolves_to_the_one_match(store: FhirStore) -> None:
    stored, _ = await store.update(
        "Patient", "p1", {"resourceType": "Patient", "identifier": [{"system": MRN, "value": "7"}]}
    )
    await store.transaction(transaction(encounter_entry(subject=f"Patient?identifier={MRN}|7")))
    encounter = (await store.search_identifier("Encounter", "urn:visit|V1"))[0]
    assert encounter["subject"]["reference"] == "Patient/p1"
    with pytest.raises(FhirStoreError) as caught:
        await store.transaction(
            transaction(encounter_entry(subject=f"Patient?identifier={MRN}|8", visit="V2"))
        )
    assert caught.value.status == 412
    assert caught.value.expression == ["Encounter.subject"]


async def test_delete_and_get_entries(store: FhirStore) -> None:
    await store.update("Patient", "p1", {"resourceType": "Patient"})
    result = await store.transaction(
        transaction(
            {"request": {"method": "DELETE", "url": "Patient/p1"}},
            {"request": {"method": "GET", "url": f"Patient?identifier={MRN}|0001"}},
            patient_entry(),
        )
    )
    assert result["entry"][0]["response"]["status"] == "204 No Content"
    assert result["entry"][1]["resource"]["total"] == 1  # GET runs after the PUT
    with pytest.raises(FhirStoreError) as caught:
        await store.read("Patient", "p1")
    assert caught.value.status == 410


async def test_batch_entries_fail_alone(store: FhirStore) -> None:
    result = await store.transaction(
        transaction(
            patient_entry(),
            {"request": {"method": "GET", "url": "Patient/nobody"}},
            patient_entry(mrn="0002", full_url="urn:uuid:q"),
            kind="batch",
        )
    )
    assert result["type"] == "batch-response"
    statuses = [entry["response"]["status"] for entry in result["entry"]]
    assert statuses == ["201 Created", "404 Not Found", "201 Created"]
    outcome = result["entry"][1]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"


async def test_transaction_many_keeps_each_bundle_atomic(store: FhirStore) -> None:
    bad = transaction(patient_entry(mrn="0002"), encounter_entry(subject="urn:uuid:missing"))
    results = await store.transaction_many(
        [transaction(patient_entry()), bad, transaction(patient_entry(mrn="0003"))]
    )
    assert isinstance(results[0], dict) and isinstance(results[2], dict)
    assert isinstance(results[1], InvalidResource)
    assert len(await store.search_identifier("Patient", f"{MRN}|0001")) == 1
    assert await store.search_identifier("Patient", f"{MRN}|0002") == []
    assert len(await store.search_identifier("Patient", f"{MRN}|0003")) == 1


async def test_synthea_bundles_load_with_conditional_references(
    store: FhirStore, synthea: Callable[[str], dict[str, Any]]
) -> None:
    hospitals = await store.transaction(synthea("0-hospitalInformation1625911868739.json.bz2"))
    practitioners = await store.transaction(
        synthea("0-practitionerInformation1625911868739.json.bz2")
    )
    for response in (hospitals, practitioners):
        assert all(e["response"]["status"] == "201 Created" for e in response["entry"])
    name = "098fc002-b87e-49dc-4b8e-8900a1bc8661.json.bz2"
    bundle = synthea(name)
    result = await store.transaction(bundle)
    assert len(result["entry"]) == len(bundle["entry"])
    patient_id = result["entry"][0]["response"]["location"].split("/")[1]
    patient = await store.read("Patient", patient_id)
    encounter_id = result["entry"][1]["response"]["location"].split("/")[1]
    encounter = await store.read("Encounter", encounter_id)
    assert encounter["subject"]["reference"] == f"Patient/{patient_id}"
    practitioner_ref = encounter["participant"][0]["individual"]["reference"]
    assert practitioner_ref.startswith("Practitioner/")
    await store.read("Practitioner", practitioner_ref.split("/")[1])
    assert patient["meta"]["versionId"] == "1"
    # Replaying the hospital batch (ifNoneExist) finds every organization and location again.
    again = await store.transaction(synthea("0-hospitalInformation1625911868739.json.bz2"))
    assert all(e["response"]["status"] == "200 OK" for e in again["entry"])


async def test_unknown_type_in_a_request_url_is_refused(store: FhirStore) -> None:
    with pytest.raises(FhirStoreError) as caught:
        await store.transaction(transaction({"request": {"method": "GET", "url": "Patinet/1"}}))
    assert "Bundle.entry[0]" in str(caught.value)
    assert not isinstance(caught.value, NotFound)
