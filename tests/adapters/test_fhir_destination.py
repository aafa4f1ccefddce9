"""The FHIR destination writing Bundles into the FHIR store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.fhir import FhirDestination, FhirDestinationConfig, FhirDestinationFactory
from engine.connectors import ConnectorContext, Delivered, Outbound
from engine.errors import RejectedDeliveryError
from fhir_store import FhirStore, migrate
from fhir_store.app import create_database

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"


@pytest.fixture
async def destination(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[FhirDestination, FhirStore]]:
    database = create_database(database_url)
    await migrate(database)  # the engine does this at start
    context = ConnectorContext(channel="his-adt", data_dir=tmp_path, database=database)
    factory = FhirDestinationFactory()
    config = factory.config_model.model_validate({"kind": "fhir"})
    built = factory.build(config, context)
    store = FhirStore(database)
    try:
        yield built, store
    finally:
        await store.aclose()
        await built.aclose()
        await database.dispose()


def outbound(payload: dict[str, Any] | bytes, message_id: int = 1) -> Outbound:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return Outbound(
        message_id=message_id,
        channel="his-adt",
        destination="fhir",
        payload=raw,
        media_type="application/fhir+json",
        attempt=1,
    )


def adt_bundle(mrn: str = "0001", visit: str = "V1") -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:p",
                "resource": {
                    "resourceType": "Patient",
                    "id": f"mrn-{mrn}",
                    "identifier": [{"system": MRN, "value": mrn}],
                },
                "request": {"method": "PUT", "url": f"Patient/mrn-{mrn}"},
            },
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": f"visit-{visit}",
                    "status": "arrived",
                    "class": {"code": "EMER"},
                    "subject": {"reference": "urn:uuid:p"},
                },
                "request": {"method": "PUT", "url": f"Encounter/visit-{visit}"},
            },
        ],
    }


async def test_bundle_is_stored_and_the_reply_is_the_response_bundle(
    destination: tuple[FhirDestination, FhirStore],
) -> None:
    fhir, store = destination
    delivered = await fhir.send(outbound(adt_bundle()))
    assert isinstance(delivered, Delivered) and delivered.reply is not None
    reply = json.loads(delivered.reply)
    assert reply["type"] == "transaction-response"
    encounter = await store.read("Encounter", "visit-V1")
    assert encounter["subject"]["reference"] == "Patient/mrn-0001"


async def test_replayed_bundle_keeps_the_same_versions(
    destination: tuple[FhirDestination, FhirStore],
) -> None:
    fhir, store = destination
    await fhir.send(outbound(adt_bundle()))
    replay = json.loads((await fhir.send(outbound(adt_bundle()))).reply or b"{}")
    assert [e["response"]["etag"] for e in replay["entry"]] == ['W/"1"', 'W/"1"']
    assert (await store.read("Patient", "mrn-0001"))["meta"]["versionId"] == "1"


async def test_single_resource_payload_is_written(
    destination: tuple[FhirDestination, FhirStore],
) -> None:
    fhir, store = destination
    await fhir.send(outbound({"resourceType": "Patient", "id": "p9", "active": True}))
    assert (await store.read("Patient", "p9"))["active"] is True


async def test_invalid_bundle_is_rejected_naming_the_entry(
    destination: tuple[FhirDestination, FhirStore],
) -> None:
    fhir, store = destination
    bundle = adt_bundle()
    bundle["entry"][1]["resource"]["subject"]["reference"] = "urn:uuid:nowhere"
    with pytest.raises(RejectedDeliveryError) as caught:
        await fhir.send(outbound(bundle))
    assert "Bundle.entry[1]" in str(caught.value)
    assert "Encounter.subject" in str(caught.value)
    assert caught.value.__cause__ is not None
    with pytest.raises(RejectedDeliveryError):
        await fhir.send(outbound(b'{"resourceType": "Bundle",'))


NOT_UTF8 = b'{"resourceType": "Patient", "name": [{"text": "\xe5\xbc"}]}'  # a cut-off 张


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (NOT_UTF8, f"not UTF-8 (byte {NOT_UTF8.index(0xE5)})"),
        (b'{"resourceType": "Bundle",\n "type": }', "not valid JSON"),
        (b'{"resourceType": "Bundle",\n "type": }', "at line 2 column 10"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"resourceType": "Bundle", "type": "searchset"}', "neither a transaction"),
    ],
)
async def test_a_payload_that_is_no_fhir_json_is_rejected_saying_what_and_where(
    destination: tuple[FhirDestination, FhirStore], payload: bytes, says: str
) -> None:
    fhir, _ = destination
    with pytest.raises(RejectedDeliveryError) as caught:
        await fhir.send(outbound(payload))
    assert says in str(caught.value)


async def test_send_many_keeps_each_message_atomic(
    destination: tuple[FhirDestination, FhirStore],
) -> None:
    fhir, store = destination
    bad = adt_bundle(mrn="0002", visit="V2")
    bad["entry"][1]["resource"]["id"] = "not the url id"
    results = await fhir.send_many(
        [
            outbound(adt_bundle(), 1),
            outbound(bad, 2),
            outbound(b"[]", 3),
            outbound(adt_bundle("0003", "V3"), 4),
        ]
    )
    assert isinstance(results[0], Delivered) and isinstance(results[3], Delivered)
    assert isinstance(results[1], RejectedDeliveryError)
    assert isinstance(results[2], RejectedDeliveryError)
    assert await store.search_identifier("Patient", f"{MRN}|0002") == []
    assert len(await store.search_identifier("Patient", f"{MRN}|0003")) == 1


async def test_send_many_applies_messages_about_one_patient_in_order(
    destination: tuple[FhirDestination, FhirStore],
) -> None:
    fhir, store = destination
    admitted = adt_bundle()
    discharged = adt_bundle()
    discharged["entry"][1]["resource"]["status"] = "finished"
    results = await fhir.send_many(
        [outbound(admitted, 1), outbound(discharged, 2), outbound(discharged, 3)]
    )
    replies = [json.loads(r.reply or b"{}") for r in results if isinstance(r, Delivered)]
    assert [[e["response"]["etag"] for e in reply["entry"]] for reply in replies] == [
        ['W/"1"', 'W/"1"'],
        ['W/"1"', 'W/"2"'],
        ['W/"1"', 'W/"2"'],
    ]
    encounter = await store.read("Encounter", "visit-V1")
    assert encounter["status"] == "finished" and encounter["meta"]["versionId"] == "2"


def test_config_refuses_unknown_keys() -> None:
    with pytest.raises(ValueError):
        FhirDestinationConfig.model_validate({"kind": "fhir", "url": "http://x"})
