"""Bad input on the write side, through the REST router on a real uvicorn server: every time a
precise OperationOutcome with the right status, nothing written, never a 500."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_store import FhirStore, FhirStoreError, PayloadTooLarge

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"
BODY_LIMIT = 256 * 1024


@pytest.fixture
async def client(store: FhirStore, fhir_server: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with fhir_server(store, max_body_bytes=BODY_LIMIT) as http:
        yield http


def patient(mrn: str = "0001") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": mrn}]}


def observation(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "troponin"},
        "subject": {"reference": subject},
    }


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def issue(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    first: dict[str, Any] = body["issue"][0]
    return first


async def total(http: httpx.AsyncClient, resource_type: str) -> int:
    """How many versions of the type were ever written (deleted ones too)."""
    count: int = (await http.get(f"/{resource_type}/_history")).json()["total"]
    return count


async def test_a_missing_or_wrong_resource_type_is_named(client: httpx.AsyncClient) -> None:
    missing = await client.post("/Patient", json={"gender": "female"})
    assert missing.status_code == 400 and issue(missing)["expression"] == ["resourceType"]
    assert "no resourceType" in issue(missing)["diagnostics"]
    wrong = await client.post("/Patient", json=observation("Patient/x"))
    assert wrong.status_code == 400 and issue(wrong)["expression"] == ["resourceType"]
    unknown = await client.put("/Patient/p1", json={"resourceType": "Patinet", "id": "p1"})
    assert unknown.status_code == 400 and "unknown resource type" in issue(unknown)["diagnostics"]
    in_bundle = await client.post(
        "",
        json=transaction(
            {"resource": {"id": "x"}, "request": {"method": "POST", "url": "Patient"}}
        ),
    )
    assert in_bundle.status_code == 400
    assert issue(in_bundle)["diagnostics"].startswith("Bundle.entry[0]")
    assert await total(client, "Patient") == 0


async def test_a_reference_to_nothing_is_refused_as_hapi_does(client: httpx.AsyncClient) -> None:
    alone = await client.post("/Observation", json=observation("Patient/nobody"))
    assert alone.status_code == 400
    assert issue(alone)["code"] == "not-found"
    assert issue(alone)["expression"] == ["Observation.subject"]
    bundle = transaction(
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": observation("Patient/nobody"),
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    refused = await client.post("", json=bundle)
    assert refused.status_code == 400
    assert issue(refused)["diagnostics"].startswith("Bundle.entry[1]: the reference at")
    assert await total(client, "Patient") == 0 and await total(client, "Observation") == 0


async def test_references_to_the_same_bundle_or_stored_resources_are_kept(
    client: httpx.AsyncClient,
) -> None:
    same_bundle = transaction(
        {
            "resource": observation("Patient/p1"),
            "request": {"method": "POST", "url": "Observation"},
        },
        {"resource": {**patient(), "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}},
    )
    assert (await client.post("", json=same_bundle)).status_code == 200
    stored = await client.post("/Observation", json=observation("Patient/p1/_history/1"))
    assert stored.status_code == 201
    external = await client.post("/Observation", json=observation("http://other.org/Patient/9"))
    assert external.status_code == 201
    assert (await client.delete("/Patient/p1")).status_code == 204
    deleted = await client.post("/Observation", json=observation("Patient/p1"))
    assert deleted.status_code == 400 and "was deleted" in issue(deleted)["diagnostics"]


async def test_a_transaction_failing_half_way_leaves_nothing(client: httpx.AsyncClient) -> None:
    bundle = transaction(
        {"resource": patient("0001"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": patient("0002"), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {**patient("0003"), "birthDate": "yesterday"},
            "request": {"method": "POST", "url": "Patient"},
        },
    )
    response = await client.post("", json=bundle)
    assert response.status_code == 422
    assert issue(response)["diagnostics"].startswith("Bundle.entry[2]")
    assert issue(response)["expression"] == ["Patient.birthDate"]
    assert await total(client, "Patient") == 0


async def test_a_bundle_over_the_entry_limit_is_413(database: Any, fhir_server: Any) -> None:
    store = FhirStore(database, max_bundle_entries=3)
    entries = [
        {"resource": patient(f"{n:04d}"), "request": {"method": "POST", "url": "Patient"}}
        for n in range(4)
    ]
    try:
        async with fhir_server(store) as http:
            response = await http.post("", json=transaction(*entries))
            assert response.status_code == 413
            assert issue(response)["code"] == "too-long"
            assert issue(response)["expression"] == ["Bundle.entry"]
            assert "4 entries" in issue(response)["diagnostics"]
            assert (await http.post("", json=transaction(*entries[:3]))).status_code == 200
        results = await store.transaction_many([transaction(*entries), transaction(*entries[:1])])
        assert isinstance(results[0], PayloadTooLarge) and isinstance(results[1], dict)
        assert not isinstance(results[1], FhirStoreError)
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("opening", "closing", "depth"),
    [("[", "]", 10_000), ('{"url":"http://x","extension":[', "]}", 450)],
    ids=["10000-arrays", "450-extensions"],
)
async def test_deep_nesting_is_a_400_not_a_crash(
    client: httpx.AsyncClient, opening: str, closing: str, depth: int
) -> None:
    # 10,000 levels cannot even be parsed; 2 x 450 levels parse, and are too deep to process.
    body = '{"resourceType":"Patient","extension":[' + opening * depth + closing * depth + "]}"
    response = await client.post("/Patient", content=body.encode())
    assert response.status_code == 400
    assert "nested too deeply" in issue(response)["diagnostics"]
    assert await total(client, "Patient") == 0


async def test_huge_strings_are_stored_whole_or_refused_at_the_body_limit(
    client: httpx.AsyncClient,
) -> None:
    long_name = "张" * (BODY_LIMIT // 4)  # 3 bytes a character in UTF-8: under the limit
    created = await client.post("/Patient", json={**patient(), "name": [{"family": long_name}]})
    assert created.status_code == 201
    read = await client.get(f"/Patient/{created.json()['id']}")
    assert read.json()["name"][0]["family"] == long_name

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit counts bytes
        yield b'{"resourceType":"Patient","name":[{"family":"'
        for _ in range(BODY_LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}]}'

    too_big = await client.post("/Patient", content=chunks())
    assert too_big.status_code == 413 and issue(too_big)["code"] == "too-long"
    assert await total(client, "Patient") == 1


async def test_bodies_that_are_not_utf8_json_say_why(client: httpx.AsyncClient) -> None:
    text = '{"resourceType":"Patient","name":[{"family":"Müller"}]}'
    latin1 = await client.post("/Patient", content=text.encode("latin-1"))
    assert latin1.status_code == 400
    assert f"byte {text.index('ü')}" in issue(latin1)["diagnostics"]
    utf16 = await client.post("/Patient", content=text.encode("utf-16"))
    assert utf16.status_code == 400 and "UTF-8" in issue(utf16)["diagnostics"]
    nan = await client.post("/Patient", content=b'{"resourceType":"Patient","x":NaN}')
    assert nan.status_code == 400 and "NaN at line 1 column 31" in issue(nan)["diagnostics"]
    # A lone surrogate is no text the store could keep as UTF-8; 1e400 is no double.
    surrogate = b'{"resourceType":"Patient","name":[{"family":"\\ud800"}]}'
    lone = await client.post("/Patient", content=surrogate)
    assert lone.status_code == 400 and "surrogate" in issue(lone)["diagnostics"]
    beyond = await client.post("/Patient", content=b'{"resourceType":"Patient","x":1e400}')
    assert beyond.status_code == 400 and "line 1 column 31" in issue(beyond)["diagnostics"]
    digits = b'{"resourceType":"Patient","multipleBirthInteger":' + b"9" * 5000 + b"}"
    long_number = await client.post("/Patient", content=digits)
    assert long_number.status_code == 400 and "number" in issue(long_number)["diagnostics"]
    assert await total(client, "Patient") == 0


# Arbitrary input: never a 5xx. The server runs on the test's event loop, so hypothesis drives
# a synchronous client from a worker thread.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["resourceType", "id", "entry", "request", "resource", "type", "meta"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
_RESOURCE_TYPES = st.sampled_from(["Patient", "Bundle", "Observation", 7, None])
_SHAPED = st.fixed_dictionaries(
    {"resourceType": _RESOURCE_TYPES},
    optional={
        "id": _JSON,
        "type": st.sampled_from(["transaction", "batch"]) | _JSON,
        "entry": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "resource": _JSON
                    | st.fixed_dictionaries(
                        {"resourceType": _RESOURCE_TYPES}, optional={"id": _JSON}
                    ),
                    "request": st.fixed_dictionaries(
                        {},
                        optional={
                            "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"])
                            | _JSON,
                            "url": st.sampled_from(
                                ["Patient", "Patient/1", "Patient?identifier=a|b"]
                            )
                            | _JSON,
                        },
                    ),
                    "fullUrl": _JSON,
                },
            ),
            max_size=3,
        ),
        "gender": _JSON,
        "name": _JSON,
    },
)


def _bodies() -> st.SearchStrategy[bytes]:
    as_json = (_JSON | _SHAPED).map(lambda value: json.dumps(value).encode())
    return st.binary(max_size=200) | as_json


async def test_arbitrary_bodies_never_get_a_5xx(client: httpx.AsyncClient) -> None:
    base_url = str(client.base_url)

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(body=_bodies(), path=st.sampled_from(["/Patient", ""]))
    def post(http: httpx.Client, body: bytes, path: str) -> None:
        response = http.post(path, content=body, headers={"Content-Type": "application/fhir+json"})
        assert response.status_code < 500, response.text

    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=30) as http:
            post(http)

    await asyncio.to_thread(run)
