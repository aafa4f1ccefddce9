"""`Prefer: handling=strict` and lenient: unknown or unsupported search parameters are
refused (400) or ignored, reported in an OperationOutcome entry and left out of the self link."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from fhir_store import FhirStore

pytestmark = pytest.mark.anyio

IGNORABLE = ("shoe-size", "_text", "_contained", "_query")


@pytest.fixture
async def two(store: FhirStore) -> FhirStore:
    await store.update("Patient", "p1", {"resourceType": "Patient", "id": "p1", "gender": "male"})
    await store.update("Patient", "p2", {"resourceType": "Patient", "id": "p2"})
    return store


@pytest.mark.parametrize("name", IGNORABLE)
@pytest.mark.parametrize(
    "prefer", ["handling=strict", "return=minimal, handling=strict", 'handling = "strict"']
)
async def test_strict_refuses_an_unknown_or_unsupported_parameter(
    two: FhirStore, fhir_http: httpx.AsyncClient, name: str, prefer: str
) -> None:
    response = await fhir_http.get(
        "/Patient", params={"gender": "male", name: "x"}, headers={"Prefer": prefer}
    )
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [name]


@pytest.mark.parametrize("name", IGNORABLE)
@pytest.mark.parametrize("headers", [{}, {"Prefer": "handling=lenient"}])
async def test_lenient_ignores_it_reports_it_and_leaves_it_out_of_the_self_link(
    two: FhirStore, fhir_http: httpx.AsyncClient, name: str, headers: dict[str, str]
) -> None:
    response = await fhir_http.get(
        "/Patient", params={"gender": "male", name: "x"}, headers=headers
    )
    assert response.status_code == 200, response.text
    bundle = response.json()
    by_mode = {e["search"]["mode"]: e["resource"] for e in bundle["entry"]}
    assert by_mode["match"]["id"] == "p1"
    (issue,) = by_mode["outcome"]["issue"]
    assert issue["severity"] == "warning" and issue["expression"] == [name]
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert parse_qsl(urlsplit(self_link).query) == [("gender", "male")]


async def test_a_bad_value_is_refused_whatever_the_handling(
    two: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    for headers in ({}, {"Prefer": "handling=lenient"}, {"Prefer": "handling=strict"}):
        response = await fhir_http.get("/Patient", params={"birthdate": "soon"}, headers=headers)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == ["birthdate"]
