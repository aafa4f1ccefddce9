"""FhirStore CRUD, versions, identifier search and validation, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine

import fhir_store._writer
from fhir_store import (
    ConditionFailed,
    FhirStore,
    Gone,
    InvalidResource,
    NotFound,
    NotSupported,
    VersionConflict,
    migrate,
)

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"  # a hospital MRN system


def patient(mrn: str, family: str = "张", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"family": family}],
        **extra,
    }


async def test_created_resource_gets_an_id_version_and_aware_timestamp(store: FhirStore) -> None:
    created = await store.create(patient("0001"))
    assert created["id"]
    assert created["meta"]["versionId"] == "1"
    stamp = datetime.fromisoformat(created["meta"]["lastUpdated"])
    assert stamp.utcoffset() is not None and stamp.microsecond == 0
    assert await store.read("Patient", created["id"]) == created


async def test_update_makes_a_new_version_and_identical_replay_keeps_it(store: FhirStore) -> None:
    first, created = await store.update("Patient", "p1", patient("0001"))
    assert created and first["meta"]["versionId"] == "1"
    second, created = await store.update("Patient", "p1", patient("0001", family="李"))
    assert not created and second["meta"]["versionId"] == "2"
    replay, created = await store.update("Patient", "p1", patient("0001", family="李"))
    assert not created
    assert replay == second  # same version and lastUpdated: nothing new written
    with_old_meta = {**patient("0001", family="李"), "meta": {"versionId": "9"}}
    assert (await store.update("Patient", "p1", with_old_meta))[0] == second


async def test_meta_tags_are_content_and_make_a_new_version(store: FhirStore) -> None:
    await store.update("Patient", "p1", patient("0001"))
    tagged = {**patient("0001"), "meta": {"tag": [{"code": "vip"}]}}
    stored, _ = await store.update("Patient", "p1", tagged)
    assert stored["meta"]["versionId"] == "2"
    assert stored["meta"]["tag"] == [{"code": "vip"}]


async def test_if_match_with_a_stale_version_is_refused(store: FhirStore) -> None:
    await store.update("Patient", "p1", patient("0001"))
    await store.update("Patient", "p1", patient("0001", family="李"))
    with pytest.raises(VersionConflict) as caught:
        await store.update("Patient", "p1", patient("0001", family="王"), if_match=1)
    assert caught.value.status == 412
    stored, _ = await store.update("Patient", "p1", patient("0001", family="王"), if_match=2)
    assert stored["meta"]["versionId"] == "3"


async def test_identifier_search_with_and_without_system(store: FhirStore) -> None:
    one = await store.create(patient("0001"))
    await store.create(patient("0002"))
    other_system = await store.create(
        {"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "0001"}]}
    )
    no_system = await store.create({"resourceType": "Patient", "identifier": [{"value": "0001"}]})
    assert [r["id"] for r in await store.search_identifier("Patient", f"{MRN}|0001")] == [one["id"]]
    anywhere = {r["id"] for r in await store.search_identifier("Patient", "0001")}
    assert anywhere == {one["id"], other_system["id"], no_system["id"]}
    assert [r["id"] for r in await store.search_identifier("Patient", "|0001")] == [no_system["id"]]
    assert await store.search_identifier("Encounter", "0001") == []


async def test_search_follows_identifier_changes(store: FhirStore) -> None:
    await store.update("Patient", "p1", patient("0001"))
    await store.update("Patient", "p1", patient("0009"))
    assert await store.search_identifier("Patient", f"{MRN}|0001") == []
    assert len(await store.search_identifier("Patient", f"{MRN}|0009")) == 1


async def test_conditional_create_returns_the_existing_match(store: FhirStore) -> None:
    first, created = await store.conditional_create(patient("0001"), f"identifier={MRN}|0001")
    assert created
    again, created = await store.conditional_create(
        patient("0001", family="李"), f"identifier={MRN}|0001"
    )
    assert not created and again == first
    await store.create(patient("0001"))
    with pytest.raises(ConditionFailed) as caught:
        await store.create(patient("0001"), if_none_exist=f"identifier={MRN}|0001")
    assert caught.value.status == 412


async def test_conditional_update_updates_the_match_or_creates(store: FhirStore) -> None:
    created, was_created = await store.conditional_update(
        "Patient", f"identifier={MRN}|0001", patient("0001")
    )
    assert was_created
    updated, was_created = await store.conditional_update(
        "Patient", f"identifier={MRN}|0001", patient("0001", family="李")
    )
    assert not was_created
    assert updated["id"] == created["id"] and updated["meta"]["versionId"] == "2"


async def test_deleted_resource_reads_as_gone_and_can_be_recreated(store: FhirStore) -> None:
    await store.update("Patient", "p1", patient("0001"))
    assert await store.delete("Patient", "p1") == 2
    with pytest.raises(Gone) as caught:
        await store.read("Patient", "p1")
    assert caught.value.status == 410
    assert await store.search_identifier("Patient", f"{MRN}|0001") == []
    assert await store.delete("Patient", "p1") is None
    revived, created = await store.update("Patient", "p1", patient("0001"))
    assert created and revived["meta"]["versionId"] == "3"


async def test_reading_an_unknown_resource_is_not_found(store: FhirStore) -> None:
    with pytest.raises(NotFound) as caught:
        await store.read("Patient", "nobody")
    assert caught.value.status == 404


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Patinet"}, "resourceType"),
        ({"name": []}, "resourceType"),
        ({"resourceType": "Patient", "id": "no spaces allowed"}, "Patient.id"),
        ({"resourceType": "Patient", "meta": "v1"}, "Patient.meta"),
    ],
)
async def test_invalid_resources_are_refused_with_a_location(
    store: FhirStore, resource: dict[str, Any], expression: str
) -> None:
    with pytest.raises(InvalidResource) as caught:
        await store.create(resource)
    assert caught.value.status == 400
    assert caught.value.expression == [expression]


async def test_content_that_is_not_an_object_is_refused(store: FhirStore) -> None:
    with pytest.raises(InvalidResource):
        await store.create(["Patient"])  # type: ignore[arg-type]


async def test_update_with_an_id_differing_from_the_url_is_refused(store: FhirStore) -> None:
    with pytest.raises(InvalidResource) as caught:
        await store.update("Patient", "p1", {**patient("0001"), "id": "p2"})
    assert caught.value.expression == ["Patient.id"]


async def test_structural_validation_names_the_bad_element(database: AsyncEngine) -> None:
    strict = FhirStore(database, validate_structure=True)
    try:
        await strict.create(patient("0001", gender="male", birthDate="1960-01-02"))
        with pytest.raises(InvalidResource) as caught:
            await strict.create(patient("0002", birthDate="02/01/1960"))
    finally:
        await strict.aclose()
    assert caught.value.status == 422
    assert caught.value.expression == ["Patient.birthDate"]
    assert "02/01/1960" not in str(caught.value)


async def test_search_by_system_alone_is_not_silently_ignored(store: FhirStore) -> None:
    with pytest.raises(NotSupported):
        await store.search_identifier("Patient", f"{MRN}|")


async def test_migrate_twice_is_harmless(database: AsyncEngine, store: FhirStore) -> None:
    await store.update("Patient", "p1", patient("0001"))
    await migrate(database)
    assert (await store.read("Patient", "p1"))["meta"]["versionId"] == "1"


async def test_a_write_waiting_too_long_for_a_connection_is_a_503_to_retry(
    store: FhirStore, fhir_http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the write engine with one connection and a short wait for it (SQLite's waits 60 s)
    engines: list[Engine] = []

    def one_connection(url: Any, **options: Any) -> Engine:
        options.update(pool_size=1, max_overflow=0, pool_timeout=0.2)
        engines.append(create_engine(url, **options))
        return engines[-1]

    monkeypatch.setattr(fhir_store._writer, "create_engine", one_connection)
    await store.update("Patient", "p1", {"resourceType": "Patient", "id": "p1"})
    assert len(engines) == 1, "the store wrote through its write engine"
    with engines[0].connect():  # another write holds the one connection
        response = await fhir_http.put("/Patient/p2", json={"resourceType": "Patient", "id": "p2"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json()["issue"][0]["code"] == "transient"
    assert (await fhir_http.get("/Patient/p2")).status_code == 404
