"""Over HTTP: the search parameters every resource has on its `meta` (`_profile`, `_security`,
`_tag`), and conditional create by the `If-None-Exist` header, as a FHIR client sends them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"
CHEST_PAIN_PROFILE = "http://greenchannel.example/StructureDefinition/chest-pain-patient"
RESTRICTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}


def patient(mrn: str, **meta: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"family": "王"}],
    }
    if meta:
        resource["meta"] = meta
    return resource


async def ids(http: httpx.AsyncClient, params: dict[str, str]) -> set[str]:
    reply = await http.get("/Patient", params=params)
    assert reply.status_code == 200, reply.text
    return {e["resource"]["id"] for e in reply.json().get("entry", [])}


async def test_profile_security_and_tag_search_the_meta(fhir_http: httpx.AsyncClient) -> None:
    tag = {"system": "http://greenchannel.example/tags", "code": "drill"}
    labelled = (
        await fhir_http.post(
            "/Patient",
            json=patient("0001", profile=[CHEST_PAIN_PROFILE], security=[RESTRICTED], tag=[tag]),
        )
    ).json()["id"]
    plain = (await fhir_http.post("/Patient", json=patient("0002"))).json()["id"]

    assert await ids(fhir_http, {"_profile": CHEST_PAIN_PROFILE}) == {labelled}
    assert await ids(fhir_http, {"_profile": CHEST_PAIN_PROFILE + "-other"}) == set()
    assert await ids(fhir_http, {"_security": f"{RESTRICTED['system']}|R"}) == {labelled}
    assert await ids(fhir_http, {"_security": "R"}) == {labelled}
    assert await ids(fhir_http, {"_tag": f"{tag['system']}|drill"}) == {labelled}
    assert await ids(fhir_http, {"_tag:not": f"{tag['system']}|drill"}) == {plain}


async def test_the_if_none_exist_header_creates_once(fhir_http: httpx.AsyncClient) -> None:
    condition = {"If-None-Exist": f"identifier={MRN}|0007"}
    first = await fhir_http.post("/Patient", json=patient("0007"), headers=condition)
    again = await fhir_http.post("/Patient", json=patient("0007"), headers=condition)
    assert first.status_code == 201, first.text
    assert again.status_code == 200, again.text  # the match, not a second Patient
    assert again.json()["id"] == first.json()["id"]
    assert await ids(fhir_http, {"identifier": f"{MRN}|0007"}) == {first.json()["id"]}

    await fhir_http.post("/Patient", json=patient("0008"))
    await fhir_http.post("/Patient", json=patient("0008"))
    ambiguous = await fhir_http.post(
        "/Patient", json=patient("0008"), headers={"If-None-Exist": f"identifier={MRN}|0008"}
    )
    assert ambiguous.status_code == 412, ambiguous.text
    assert ambiguous.json()["resourceType"] == "OperationOutcome"
