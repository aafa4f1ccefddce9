"""What the standard mappings make is what the store accepts: LIS results and HIS registrations
arrive in either order and converge on the same Patient, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.hl7v2 import parse_for_mapping
from engine.mapping import load_mapping
from fhir_store import FhirStore, InvalidResource

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "mappings" / "tests" / "samples"


@pytest.fixture
async def store(database: AsyncEngine) -> AsyncIterator[FhirStore]:
    """The store as the engine's FHIR destination writes to it: messages arrive in any order,
    so references to resources not stored yet are accepted (`check_references=False`)."""
    fhir = FhirStore(database, check_references=False)
    try:
        yield fhir
    finally:
        await fhir.aclose()


async def test_the_rest_api_store_refuses_results_for_an_unknown_patient(
    database: AsyncEngine,
) -> None:
    fhir = FhirStore(database)
    try:
        with pytest.raises(InvalidResource, match="does not exist"):
            await fhir.transaction(_bundle("oru_lab.yaml", "lis-oru-troponin-gb18030.hl7"))
    finally:
        await fhir.aclose()


def _bundle(mapping: str, sample: str) -> dict[str, Any]:
    document = parse_for_mapping((SAMPLES / sample).read_bytes(), "utf-8")
    bundle: dict[str, Any] = load_mapping(ROOT / "mappings" / "hl7v2" / mapping).apply(document)
    return bundle


async def test_lab_results_before_the_registration_converge_on_one_patient(
    store: FhirStore,
) -> None:
    oru = _bundle("oru_lab.yaml", "lis-oru-troponin-gb18030.hl7")
    adt = _bundle("adt.yaml", "adt-a04.hl7")
    await store.transaction(oru)  # the LIS is faster than the HIS: results first
    await store.transaction(adt)
    patient = next(
        e["resource"] for e in adt["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    for entry in oru["entry"]:
        resource = entry["resource"]
        stored = await store.read(resource["resourceType"], resource["id"])
        subject = stored["subject"]["reference"]
        assert subject == f"Patient/{patient['id']}"
    read_patient = await store.read("Patient", patient["id"])
    assert read_patient["name"][0]["text"] == patient["name"][0]["text"]


async def test_a_resent_lab_message_converges_on_the_same_resources(store: FhirStore) -> None:
    oru = _bundle("oru_lab.yaml", "lis-oru-troponin-utf8.hl7")
    first = await store.transaction(oru)
    again = await store.transaction(_bundle("oru_lab.yaml", "lis-oru-troponin-gb18030.hl7"))
    locations = [e["response"]["location"].split("/_history")[0] for e in first["entry"]]
    assert [e["response"]["location"].split("/_history")[0] for e in again["entry"]] == locations
    # The same content again (the GB 18030 copy of the message): nothing new to store.
    assert [e["response"]["etag"] for e in again["entry"]] == [
        e["response"]["etag"] for e in first["entry"]
    ]
    corrected = _bundle("oru_lab.yaml", "lis-oru-troponin-utf8.hl7")
    index, troponin = next(
        (i, e["resource"]) for i, e in enumerate(corrected["entry"])
        if e["resource"]["resourceType"] == "Observation"
        and e["resource"]["code"]["coding"][-1]["code"] == "HSTNI"
    )  # fmt: skip
    troponin["valueQuantity"]["value"], troponin["status"] = 48.0, "corrected"
    result = await store.transaction(corrected)
    changed = [e["response"]["etag"] for e in result["entry"]]
    assert changed[index] == 'W/"2"' and changed.count('W/"2"') == 1
