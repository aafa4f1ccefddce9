"""Transaction and batch Bundles: atomicity, references, conditional entries, groups, Synthea."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import (
    FhirStore,
    FhirStoreError,
    InvalidResource,
    NotFound,
    VersionConflict,
    migrate,
)
from fhir_store.app import create_database

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


async def test_references_inside_arrays_are_rewritten_and_the_sent_bundle_kept(
    store: FhirStore,
) -> None:
    encounter = encounter_entry()
    encounter["resource"]["participant"] = [
        {"type": [{"text": "attender"}]},
        {"individual": {"reference": "urn:uuid:p"}, "period": {"start": "2024-05-01"}},
    ]
    bundle = transaction(patient_entry(), encounter)
    sent = copy.deepcopy(bundle)
    result = await store.transaction(bundle)
    patient_id = result["entry"][0]["response"]["location"].split("/")[1]
    stored = (await store.search_identifier("Encounter", "urn:visit|V1"))[0]
    assert stored["participant"] == [
        {"type": [{"text": "attender"}]},
        {"individual": {"reference": f"Patient/{patient_id}"}, "period": {"start": "2024-05-01"}},
    ]
    assert stored["subject"] == {"reference": f"Patient/{patient_id}"}
    assert bundle == sent


async def test_an_unresolvable_reference_in_an_array_names_its_element(store: FhirStore) -> None:
    encounter = encounter_entry(subject="Patient/x")
    encounter["resource"]["participant"] = [{}, {"individual": {"reference": "urn:uuid:gone"}}]
    with pytest.raises(InvalidResource) as caught:
        await store.transaction(transaction(encounter))
    assert caught.value.expression == ["Encounter.participant[1].individual"]


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


def adt(patient_id: str, family: str, *, mrn: str = "0001", visit: str = "V1") -> dict[str, Any]:
    """An ADT message as the his-adt mapping makes it: PUT Patient and Encounter by id."""
    return transaction(
        {
            "fullUrl": "urn:uuid:p",
            "resource": {
                "resourceType": "Patient",
                "id": patient_id,
                "identifier": [{"system": MRN, "value": mrn}],
                "name": [{"family": family}],
            },
            "request": {"method": "PUT", "url": f"Patient/{patient_id}"},
        },
        {
            "resource": {
                "resourceType": "Encounter",
                "id": f"visit-{visit}",
                "status": "in-progress",
                "class": {"code": "EMER"},
                "subject": {"reference": "urn:uuid:p"},
            },
            "request": {"method": "PUT", "url": f"Encounter/visit-{visit}"},
        },
    )


def etags(result: dict[str, Any] | FhirStoreError) -> list[str]:
    assert isinstance(result, dict), result
    return [entry["response"]["etag"] for entry in result["entry"]]


def statuses(result: dict[str, Any] | FhirStoreError) -> list[str]:
    assert isinstance(result, dict), result
    return [entry["response"]["status"] for entry in result["entry"]]


async def version_count(database: AsyncEngine, resource_type: str, resource_id: str) -> int:
    async with database.connect() as connection:
        count = await connection.scalar(
            text(
                "SELECT count(*) FROM fhir_resource_version "
                "WHERE resource_type = :type AND resource_id = :id"
            ),
            {"type": resource_type, "id": resource_id},
        )
    return int(count or 0)


async def test_later_bundles_of_a_group_see_the_earlier_ones_changes(
    store: FhirStore, database: AsyncEngine
) -> None:
    results = await store.transaction_many(
        [
            adt("p1", "张"),
            adt("p1", "李"),
            adt("p1", "李"),  # the same message again: nothing new
            adt("p1", "王", mrn="0002"),
        ]
    )
    assert [etags(result)[0] for result in results] == ['W/"1"', 'W/"2"', 'W/"2"', 'W/"3"']
    assert [etags(result)[1] for result in results] == ['W/"1"'] * 4
    assert [statuses(result)[0] for result in results] == [
        "201 Created",
        "200 OK",
        "200 OK",
        "200 OK",
    ]
    patient = await store.read("Patient", "p1")
    assert patient["meta"]["versionId"] == "3" and patient["name"] == [{"family": "王"}]
    assert await version_count(database, "Patient", "p1") == 3
    assert await store.search_identifier("Patient", f"{MRN}|0001") == []
    assert [p["id"] for p in await store.search_identifier("Patient", f"{MRN}|0002")] == ["p1"]


async def test_a_failing_bundle_in_a_group_leaves_nothing_behind(
    store: FhirStore, database: AsyncEngine
) -> None:
    bad = adt("p1", "赵", visit="V9")
    bad["entry"].append({"request": {"method": "GET", "url": "Patient/nobody"}})  # runs last
    results = await store.transaction_many(
        [adt("p1", "张"), bad, adt("p1", "李"), adt("p2", "王", mrn="0002", visit="V2")]
    )
    assert isinstance(results[1], NotFound)
    assert "Bundle.entry[2]" in results[1].message
    # The Bundle after the failed one compares with the state before it: 张 → 李 is version 2.
    assert etags(results[2])[0] == 'W/"2"'
    assert etags(results[3]) == ['W/"1"', 'W/"1"']
    assert (await store.read("Patient", "p1"))["name"] == [{"family": "李"}]
    assert await version_count(database, "Patient", "p1") == 2
    with pytest.raises(NotFound):
        await store.read("Encounter", "visit-V9")
    assert len(await store.search_identifier("Patient", f"{MRN}|0002")) == 1


async def test_a_replayed_group_changes_nothing(store: FhirStore, database: AsyncEngine) -> None:
    group = [adt(f"p{n}", "张", mrn=f"{n:04d}", visit=f"V{n}") for n in range(5)]
    first = await store.transaction_many(group)
    again = await store.transaction_many(group)
    assert [etags(result) for result in again] == [etags(result) for result in first]
    assert [statuses(result) for result in again] == [["200 OK", "200 OK"]] * 5
    assert await version_count(database, "Encounter", "visit-V3") == 1


async def test_a_bundle_losing_a_write_race_fails_alone_and_may_be_resent(
    store: FhirStore, database: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    await store.update("Patient", "p1", {"resourceType": "Patient", "active": True})
    # Another writer's version 2 of p1, as if committed while this group was being resolved.
    async with database.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO fhir_resource_version "
                "(resource_type, resource_id, version_id, last_updated, deleted, method, content) "
                "VALUES ('Patient', 'p1', 2, :now, false, 'PUT', '{}')"
            ),
            {"now": datetime.now(UTC).replace(tzinfo=None)},
        )
    results = await store.transaction_many(
        [adt("p2", "张", mrn="0002", visit="V2"), adt("p1", "李"), adt("p3", "王", visit="V3")]
    )
    assert isinstance(results[1], VersionConflict) and results[1].retryable
    assert etags(results[0]) == ['W/"1"', 'W/"1"'] and etags(results[2]) == ['W/"1"', 'W/"1"']
    assert (await store.read("Patient", "p1"))["meta"]["versionId"] == "1"
    assert (await store.read("Encounter", "visit-V3"))["subject"]["reference"] == "Patient/p3"
    with pytest.raises(NotFound):
        await store.read("Encounter", "visit-V1")
    # a race the store handles is no warning in the operators' logs
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_resource_another_writer_creates_meanwhile_is_no_conflict(
    store: FhirStore, database: AsyncEngine
) -> None:
    """Two lanes of a channel PUT the same Practitioner at once: the Bundle that loses the race
    is applied again on the winner's row (the same content, no new version) instead of failing
    as retryable, which cost its lane a retry wait."""
    practitioner = {"resourceType": "Practitioner", "id": "dr-8737", "name": [{"family": "医生"}]}
    bundle = transaction(
        {"resource": practitioner, "request": {"method": "PUT", "url": "Practitioner/dr-8737"}}
    )
    stored = {**practitioner, "meta": {"versionId": "1", "lastUpdated": "2026-11-25T08:00:00Z"}}
    columns = {"now": datetime.now(UTC).replace(tzinfo=None), "content": json.dumps(stored)}
    async with database.connect() as other:
        await other.begin()
        await other.execute(
            text(
                "INSERT INTO fhir_resource (resource_type, id, version_id, last_updated, deleted, "
                "content) VALUES ('Practitioner', 'dr-8737', 1, :now, false, :content)"
            ),
            columns,
        )
        await other.execute(
            text(
                "INSERT INTO fhir_resource_version (resource_type, resource_id, version_id, "
                "last_updated, deleted, method, content) "
                "VALUES ('Practitioner', 'dr-8737', 1, :now, false, 'PUT', :content)"
            ),
            columns,
        )
        write = asyncio.create_task(store.transaction_many([bundle]))
        await until_a_write_waits(database)
        await other.commit()
    (result,) = await write
    assert statuses(result) == ["200 OK"] and etags(result) == ['W/"1"']
    assert await version_count(database, "Practitioner", "dr-8737") == 1


async def until_a_write_waits(database: AsyncEngine) -> None:
    """Until another transaction waits for a lock (PostgreSQL): the store's insert of a row
    this test inserted and has not committed. SQLite's store takes its write lock before it
    reads, so it cannot lose that race; a moment is enough for it to start waiting."""
    if database.dialect.name == "sqlite":
        await asyncio.sleep(0.2)
        return
    async with database.connect() as watcher:
        for _ in range(500):
            waiting = await watcher.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            await watcher.rollback()
            if waiting:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the store's write never waited for the other transaction")


async def test_conditional_entries_of_a_group_find_what_earlier_bundles_wrote(
    store: FhirStore,
) -> None:
    renamed = transaction(patient_entry())
    renamed["entry"][0]["resource"]["name"] = [{"family": "李"}]
    referring = transaction(encounter_entry(subject=f"Patient?identifier={MRN}|0001", visit="V2"))
    results = await store.transaction_many(
        [transaction(patient_entry(), encounter_entry()), renamed, referring]
    )
    created = results[0]
    assert isinstance(created, dict)
    patient_id = created["entry"][0]["response"]["location"].split("/")[1]
    assert etags(results[1]) == ['W/"2"']
    assert statuses(results[1]) == ["200 OK"]
    assert statuses(results[2]) == ["201 Created"]
    (patient,) = await store.search_identifier("Patient", f"{MRN}|0001")
    assert patient["id"] == patient_id and patient["name"] == [{"family": "李"}]
    (encounter,) = await store.search_identifier("Encounter", "urn:visit|V2")
    assert encounter["subject"]["reference"] == f"Patient/{patient_id}"


async def test_an_in_memory_database_is_written_on_the_callers_engine() -> None:
    database = create_database("sqlite+aiosqlite://")
    store = FhirStore(database)
    try:
        await migrate(database)
        results = await store.transaction_many([adt("p1", "张"), adt("p1", "李")])
        assert [etags(result)[0] for result in results] == ['W/"1"', 'W/"2"']
        assert (await store.read("Patient", "p1"))["name"] == [{"family": "李"}]
    finally:
        await store.aclose()
        await database.dispose()
