"""Groups of Bundles resolved in the store's background process, then checked and written by
the writer (`resolve_in_background`, the FHIR destination's store): the same writes as resolved
inline, never on answers that changed meanwhile, and nothing lost when the process dies.

Stores resolve in the background on SQLite only; the plan and its check are the same code on
both databases and are tested on both."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, InvalidResource, parse_search
from fhir_store._background import pool
from fhir_store._group import Plan, write_plan
from fhir_store._json import loads
from fhir_store._planning import plan_in_background
from fhir_store._writer import create_write_engine
from tests.fhir_store.test_custom_search_parameter import (
    NODES,
    observation,
    time_node_parameter,
)
from tests.fhir_store.test_transactions import MRN, encounter_entry, patient_entry, transaction

pytestmark = pytest.mark.anyio
# the store itself resolves groups in the background only on SQLite
sqlite_store = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
async def planned(database: AsyncEngine) -> AsyncIterator[FhirStore]:
    """A store that resolves its groups in the background process, as the FHIR destination's."""
    fhir = FhirStore(database, resolve_in_background=True)
    try:
        yield fhir
    finally:
        await fhir.aclose()


async def plan(store: FhirStore, *bundles: dict[str, Any]) -> Plan:
    """The bundles resolved in the background process; fails if it could not."""
    # this process's custom parameters, which the background process is asked to match, are
    # those of the database last loaded (another test's), until a store on this one loads them
    await store.search_parameters()
    database = store.database
    resolved = await plan_in_background(
        database.url, list(bundles), datetime.now(UTC), True, False, True
    )
    assert resolved is not None, "the background process resolved nothing"
    return resolved


def write(database: AsyncEngine, resolved: Plan) -> list[Any] | None:
    """`write_plan` in a write transaction of its own, committed."""
    engine = create_write_engine(database)
    assert engine is not None
    try:
        with engine.begin() as connection:
            return write_plan(connection, resolved)
    finally:
        engine.dispose()


def location_id(result: Any, entry: int = 0) -> str:
    assert isinstance(result, dict), result
    return str(result["entry"][entry]["response"]["location"].split("/")[1])


async def test_a_group_resolved_in_the_background_is_written_as_resolved(
    database: AsyncEngine, store: FhirStore
) -> None:
    resolved = await plan(store, transaction(patient_entry(), encounter_entry()))
    results = write(database, resolved)
    assert results is not None, "a plan nobody else wrote across was not written"
    (created,) = results
    patient_id, encounter_id = location_id(created, 0), location_id(created, 1)
    (patient,) = await store.search_identifier("Patient", f"{MRN}|0001")
    assert patient["id"] == patient_id and patient["meta"]["versionId"] == "1"
    encounter = await store.read("Encounter", encounter_id)
    assert encounter["subject"] == {"reference": f"Patient/{patient_id}"}
    # the index rows the background process extracted were written with the resources
    found = await search_ids(store, "Encounter", patient=patient_id, **{"class": "EMER"})
    assert found == [encounter_id]


async def test_a_plan_whose_reads_changed_meanwhile_writes_nothing(
    database: AsyncEngine, planned: FhirStore
) -> None:
    """Two groups resolved before either is written both find no patient 0001: the second,
    written after the first, would create the patient again. Its plan is refused, and the
    group resolved again in the write finds the first one's patient."""
    first = await plan(planned, transaction(patient_entry()))
    second = await plan(planned, transaction(patient_entry(), encounter_entry()))
    assert write(database, first) is not None
    assert write(database, second) is None
    assert len(await planned.search_identifier("Patient", f"{MRN}|0001")) == 1
    assert await planned.search_identifier("Encounter", "urn:visit|V1") == []

    (result,) = await planned.transaction_many([transaction(patient_entry(), encounter_entry())])
    (patient,) = await planned.search_identifier("Patient", f"{MRN}|0001")
    assert location_id(result, 0) == patient["id"] and patient["meta"]["versionId"] == "1"


PUT_DR_1 = "Practitioner/dr-1"


async def test_a_plan_over_a_resource_updated_meanwhile_writes_nothing(
    database: AsyncEngine, planned: FhirStore
) -> None:
    await planned.update("Practitioner", "dr-1", {"resourceType": "Practitioner", "id": "dr-1"})
    renamed = {"resourceType": "Practitioner", "id": "dr-1", "name": [{"family": "王"}]}
    resolved = await plan(
        planned,
        transaction(
            {"resource": renamed, "request": {"method": "PUT", "url": "Practitioner/dr-1"}}
        ),
    )
    await planned.update("Practitioner", "dr-1", {**renamed, "name": [{"family": "李"}]})
    assert write(database, resolved) is None
    practitioner = await planned.read("Practitioner", "dr-1")
    assert practitioner["name"] == [{"family": "李"}] and practitioner["meta"]["versionId"] == "2"


@sqlite_store
async def test_groups_resolved_in_the_background_answer_as_inline_ones(
    planned: FhirStore,
) -> None:
    renamed = transaction(patient_entry())
    renamed["entry"][0]["resource"]["name"] = [{"family": "李"}]
    referring = transaction(encounter_entry(subject=f"Patient?identifier={MRN}|0001", visit="V2"))
    broken = transaction(encounter_entry(subject="urn:uuid:nobody", visit="V3"))
    results = await planned.transaction_many(
        [transaction(patient_entry(), encounter_entry()), renamed, broken, referring]
    )
    patient_id = location_id(results[0])
    assert results[1]["entry"][0]["response"]["etag"] == 'W/"2"'  # type: ignore[index]
    # an error crosses from the other process as the error it is, naming where
    assert isinstance(results[2], InvalidResource)
    assert results[2].status == 400
    assert results[2].message.startswith("Bundle.entry[0]: the reference at Encounter.subject")
    (encounter,) = await planned.search_identifier("Encounter", "urn:visit|V2")
    assert encounter["subject"] == {"reference": f"Patient/{patient_id}"}
    assert await planned.search_identifier("Encounter", "urn:visit|V3") == []
    (patient,) = await planned.search_identifier("Patient", f"{MRN}|0001")
    assert patient["name"] == [{"family": "李"}]


@sqlite_store
async def test_custom_search_parameters_index_background_writes(planned: FhirStore) -> None:
    await planned.update("SearchParameter", "node", {**time_node_parameter(), "id": "node"})
    bundle = transaction(
        *(
            {"resource": observation(f"{node}-1", node), "request": {"method": "PUT", "url": url}}
            for node, url in (("door", "Observation/door-1"), ("ecg", "Observation/ecg-1"))
        )
    )
    await planned.transaction_many([bundle])
    found = await search_ids(planned, "Observation", **{"time-node-code": f"{NODES}|door"})
    assert found == ["door-1"]


@sqlite_store
async def test_a_killed_background_process_loses_no_write(planned: FhirStore) -> None:
    await planned.transaction_many([transaction(patient_entry("0001"))])
    killed = await asyncio.wrap_future(pool().submit(os.getpid))
    os.kill(killed, signal.SIGKILL)
    await asyncio.sleep(0.5)  # the pool notices its process is gone

    results = await planned.transaction_many([transaction(patient_entry("0002"))])
    results += await planned.transaction_many([transaction(patient_entry("0003"))])
    assert all(isinstance(result, dict) for result in results), results
    for mrn in ("0001", "0002", "0003"):
        assert len(await planned.search_identifier("Patient", f"{MRN}|{mrn}")) == 1
    # and a new process took over
    assert await asyncio.wrap_future(pool().submit(os.getpid)) != killed


async def search_ids(store: FhirStore, resource_type: str, **params: str) -> list[str]:
    await store.search_parameters()  # the custom ones too
    page = await store.search(parse_search(resource_type, list(params.items()), strict=True))
    return sorted(loads(content)["id"] for content in page.contents)
