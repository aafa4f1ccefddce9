"""Every write is validated against the fhir.resources R4B models unless the store is told not
to: each write path refuses a resource with a wrongly typed element (422, naming its path)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any
from unittest.mock import ANY

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, FhirStoreError, InvalidResource
from fhir_store._validation import BACKGROUND_MIN, Prevalidated, prevalidate, validate_structure

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"


def patient(mrn: str = "0001", **elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}], **elements}


def bad(mrn: str = "0001") -> dict[str, Any]:
    """A Patient whose gender is a number: JSON, FHIR-shaped, structurally invalid."""
    return patient(mrn, gender=7)


def bundle(kind: str, *resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": resource, "request": {"method": "POST", "url": "Patient"}}
            for resource in resources
        ],
    }


Write = Callable[[FhirStore], Awaitable[Any]]

WRITES: dict[str, Write] = {
    "create": lambda s: s.create(bad()),
    "conditional create": lambda s: s.create(bad(), if_none_exist=f"identifier={MRN}|0001"),
    "update": lambda s: s.update("Patient", "p1", {**bad(), "id": "p1"}),
    "conditional update": lambda s: s.conditional_update(
        "Patient", f"identifier={MRN}|0001", bad()
    ),
    "transaction": lambda s: s.transaction(bundle("transaction", patient("0002"), bad())),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
async def test_each_write_path_refuses_an_invalid_resource(store: FhirStore, write: Write) -> None:
    with pytest.raises(InvalidResource) as caught:
        await write(store)
    assert caught.value.status == 422 and caught.value.code == "structure"
    assert caught.value.expression == ["Patient.gender"]
    assert await store.search_identifier("Patient", f"{MRN}|0002") == []


async def test_a_transaction_names_the_invalid_entry(store: FhirStore) -> None:
    with pytest.raises(InvalidResource) as caught:
        await store.transaction(bundle("transaction", patient("0002"), bad()))
    assert caught.value.message.startswith("Bundle.entry[1]: ")


async def test_a_batch_refuses_only_the_invalid_entry(store: FhirStore) -> None:
    result = await store.transaction(bundle("batch", patient("0002"), bad()))
    statuses = [entry["response"]["status"] for entry in result["entry"]]
    assert statuses == ["201 Created", "422 Unprocessable Entity"]
    outcome = result["entry"][1]["response"]["outcome"]
    assert outcome["issue"][0]["expression"] == ["Patient.gender"]


async def test_the_result_of_a_patch_is_validated(store: FhirStore) -> None:
    created = await store.create(patient())
    operation = [{"op": "add", "path": "/birthDate", "value": "last spring"}]
    with pytest.raises(InvalidResource) as caught:
        await store.patch("Patient", created["id"], operation)
    assert caught.value.expression == ["Patient.birthDate"]
    assert (await store.read("Patient", created["id"]))["meta"]["versionId"] == "1"


async def test_the_fhir_destination_path_validates_each_bundle(store: FhirStore) -> None:
    results = await store.transaction_many(
        [bundle("transaction", patient("0002")), bundle("transaction", bad("0003"))]
    )
    assert isinstance(results[0], dict)
    assert isinstance(results[1], InvalidResource) and results[1].status == 422


async def test_validation_can_be_turned_off(database: AsyncEngine) -> None:
    lenient = FhirStore(database, validate_structure=False)
    try:
        stored = await lenient.create(bad())
        assert stored["gender"] == 7
    finally:
        await lenient.aclose()


async def test_a_replay_of_stored_content_is_not_validated_again(
    store: FhirStore, database: AsyncEngine
) -> None:
    # Content stored while validation was off converges on a replay instead of failing.
    lenient = FhirStore(database, validate_structure=False)
    try:
        first, _ = await lenient.update("Patient", "p1", {**bad(), "id": "p1"})
    finally:
        await lenient.aclose()
    again, created = await store.update("Patient", "p1", {**bad(), "id": "p1"})
    assert not created and again["meta"]["versionId"] == first["meta"]["versionId"] == "1"
    with pytest.raises(InvalidResource):  # a change to it is validated
        await store.update("Patient", "p1", {**bad(), "id": "p1", "active": True})


def many(count: int, bad_at: int | None = None) -> list[dict[str, Any]]:
    """`count` Patients, the one at `bad_at` structurally invalid."""
    return [bad(f"{n:04d}") if n == bad_at else patient(f"{n:04d}") for n in range(count)]


async def test_a_large_transaction_is_refused_as_a_small_one_is(store: FhirStore) -> None:
    small, large = (
        bundle("transaction", patient("9999"), bad()),
        bundle("transaction", *many(BACKGROUND_MIN + 8, bad_at=20)),
    )
    assert prevalidate([small]) is None and prevalidate([large]) is not None
    with pytest.raises(InvalidResource) as inline:
        await store.transaction(small)
    with pytest.raises(InvalidResource) as background:
        await store.transaction(large)
    assert background.value.message.startswith("Bundle.entry[20]: ")
    assert background.value.message.removeprefix("Bundle.entry[20]: ") == (
        inline.value.message.removeprefix("Bundle.entry[1]: ")
    )
    assert background.value.status == 422 and background.value.expression == ["Patient.gender"]
    assert await store.search_identifier("Patient", f"{MRN}|0000") == []  # nothing of it kept


async def test_a_structure_problem_comes_before_a_later_failure_in_a_large_transaction(
    store: FhirStore,
) -> None:
    await store.update("Patient", "p1", {**patient("p1"), "id": "p1"})
    entries = bundle("transaction", *many(BACKGROUND_MIN, bad_at=3))
    # a lost update as well, which the write meets only after the resources were checked
    entries["entry"].append(
        {
            "resource": {**patient("p1"), "id": "p1", "active": True},
            "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"7"'},
        }
    )
    with pytest.raises(InvalidResource) as caught:
        await store.transaction(entries)
    assert caught.value.message.startswith("Bundle.entry[3]: ")
    assert caught.value.expression == ["Patient.gender"]


async def test_a_large_valid_transaction_still_names_the_entry_that_failed(
    store: FhirStore,
) -> None:
    await store.update("Patient", "p1", {**patient("p1"), "id": "p1"})
    entries = bundle("transaction", *many(BACKGROUND_MIN))
    entries["entry"].append(
        {
            "resource": {**patient("p1"), "id": "p1", "active": True},
            "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": 'W/"7"'},
        }
    )
    with pytest.raises(FhirStoreError) as caught:
        await store.transaction(entries)
    assert caught.value.status == 412
    assert caught.value.message.startswith(f"Bundle.entry[{BACKGROUND_MIN}]: ")


async def test_a_large_batch_refuses_only_its_invalid_entries(store: FhirStore) -> None:
    result = await store.transaction(bundle("batch", *many(BACKGROUND_MIN, bad_at=5)))
    statuses = [entry["response"]["status"] for entry in result["entry"]]
    assert statuses.count("201 Created") == BACKGROUND_MIN - 1
    assert statuses[5] == "422 Unprocessable Entity"
    assert result["entry"][5]["response"]["outcome"]["issue"][0]["expression"] == ["Patient.gender"]


async def test_a_group_of_bundles_is_validated_bundle_by_bundle(store: FhirStore) -> None:
    half = BACKGROUND_MIN // 2 + 1
    good, broken = many(half), many(half, bad_at=2)
    for resource in broken:
        resource["identifier"][0]["value"] += "-b"
    results = await store.transaction_many(
        [bundle("transaction", *good), bundle("transaction", *broken)]
    )
    assert isinstance(results[0], dict) and len(results[0]["entry"]) == half
    assert isinstance(results[1], InvalidResource)
    assert results[1].message.startswith("Bundle.entry[2]: ")


def test_resources_are_validated_here_when_the_validating_process_died() -> None:
    group = [bundle("transaction", *many(BACKGROUND_MIN, bad_at=7))]
    started = prevalidate(group)
    assert started is not None
    died: Future[Any] = Future()
    died.set_exception(BrokenProcessPool("the validating process was killed"))
    orphaned = Prevalidated(died, started._resources, started._positions)
    assert orphaned.any_issues()
    assert orphaned.issues(group[0], 7) == [("Patient.gender", ANY)]
    assert orphaned.issues(group[0], 6) == []


async def test_r4_types_without_an_r4b_model_are_stored_unchecked(store: FhirStore) -> None:
    # fhir.resources has no R4 models; R4B dropped MedicinalProduct, so it cannot be checked.
    stored = await store.create(
        {"resourceType": "MedicinalProduct", "name": [{"productName": "x"}]}
    )
    assert stored["meta"]["versionId"] == "1"


async def test_synthea_bundles_load_with_validation_on(
    store: FhirStore, synthea: Callable[[str], dict[str, Any]]
) -> None:
    hospitals = synthea("0-hospitalInformation1625911868739.json.bz2")
    practitioners = synthea("0-practitionerInformation1625911868739.json.bz2")
    for loaded in (hospitals, practitioners):
        result = await store.transaction(loaded)
        assert len(result["entry"]) == len(loaded["entry"])


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["value", "system", "code", "reference", "extension", "url", "start"])
            | st.text(max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
_ELEMENTS = {
    "Patient": ["name", "birthDate", "gender", "contact", "deceasedBoolean", "extension"],
    "Observation": ["status", "code", "valueQuantity", "effectiveDateTime", "component"],
    "Encounter": ["status", "class", "period", "participant", "subject"],
}


@settings(max_examples=300, deadline=None)
@given(
    resource_type=st.sampled_from(sorted(_ELEMENTS)),
    data=st.data(),
)
def test_validation_of_arbitrary_content_only_ever_raises_invalid_resource(
    resource_type: str, data: st.DataObject
) -> None:
    names = data.draw(st.lists(st.sampled_from(_ELEMENTS[resource_type]), unique=True))
    resource = {"resourceType": resource_type, **{name: data.draw(_JSON) for name in names}}
    try:
        validate_structure(resource)
    except InvalidResource as error:
        assert error.status == 422 and error.expression
        assert all(path.startswith(resource_type) for path in error.expression)


def test_a_content_found_valid_before_does_not_vouch_for_a_changed_one() -> None:
    # Valid contents are remembered by their JSON (a sender repeats its Practitioner in every
    # message); one changed element must be checked again.
    practitioner = {"resourceType": "Practitioner", "id": "d1", "active": True,
                    "name": [{"family": "李", "given": ["四"]}]}  # fmt: skip
    for _ in range(3):
        validate_structure(practitioner)
    for broken in (
        {**practitioner, "birthDate": "1999-13-45"},
        {**practitioner, "name": [{"family": ["李"]}]},
        {**practitioner, "gender": 5},
    ):
        with pytest.raises(InvalidResource) as raised:
            validate_structure(broken)
        assert raised.value.expression and raised.value.expression[0].startswith("Practitioner")
        validate_structure(practitioner)  # and the valid one stays valid
