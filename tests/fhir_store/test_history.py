"""vread and instance, type and system history over HTTP (uvicorn on 127.0.0.1, httpx)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_store import FhirStore

pytestmark = pytest.mark.anyio

MRN = "urn:oid:1.2.156.112604.1.2.1"


def patient(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}]}


async def three_versions(http: httpx.AsyncClient) -> None:
    """Patient/p1: created, updated, deleted."""
    assert (await http.put("/Patient/p1", json={**patient("张"), "id": "p1"})).status_code == 201
    assert (await http.put("/Patient/p1", json={**patient("李"), "id": "p1"})).status_code == 200
    assert (await http.delete("/Patient/p1")).status_code == 204


async def test_vread_returns_each_version_and_gone_for_the_deletion(
    fhir_http: httpx.AsyncClient,
) -> None:
    await three_versions(fhir_http)
    first = await fhir_http.get("/Patient/p1/_history/1")
    assert first.status_code == 200 and first.headers["etag"] == 'W/"1"'
    assert first.json()["name"][0]["family"] == "张"
    assert (await fhir_http.get("/Patient/p1/_history/2")).json()["meta"]["versionId"] == "2"
    deleted = await fhir_http.get("/Patient/p1/_history/3")
    assert deleted.status_code == 410
    assert deleted.json()["issue"][0]["code"] == "deleted"
    for unknown in ("/Patient/p1/_history/4", "/Patient/p1/_history/x", "/Patient/p2/_history/1"):
        assert (await fhir_http.get(unknown)).status_code == 404
    assert (await fhir_http.get("/Patient/p1")).status_code == 410


async def test_instance_history_lists_versions_newest_first_with_requests(
    fhir_http: httpx.AsyncClient,
) -> None:
    await three_versions(fhir_http)
    response = await fhir_http.get("/Patient/p1/_history")
    assert response.status_code == 200
    bundle = response.json()
    assert bundle["type"] == "history" and bundle["total"] == 3
    deleted, updated, created = bundle["entry"]
    assert "resource" not in deleted
    assert deleted["request"] == {"method": "DELETE", "url": "Patient/p1"}
    assert deleted["response"]["etag"] == 'W/"3"'
    assert updated["request"] == {"method": "PUT", "url": "Patient/p1"}
    assert updated["response"]["status"] == "200 OK"
    assert updated["resource"]["name"][0]["family"] == "李"
    assert created["response"]["status"] == "201 Created"
    assert created["response"]["etag"] == 'W/"1"'
    assert created["response"]["lastModified"] == created["resource"]["meta"]["lastUpdated"]
    assert created["fullUrl"].endswith("/fhir/Patient/p1")
    assert created["fullUrl"].startswith("http://")
    assert (await fhir_http.get("/Patient/nobody/_history")).status_code == 404


async def test_type_and_system_history_with_count_and_next_link(
    fhir_http: httpx.AsyncClient,
) -> None:
    await three_versions(fhir_http)
    created = await fhir_http.post(
        "/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "hr"}},
    )
    assert created.status_code == 201
    patients = (await fhir_http.get("/Patient/_history")).json()
    assert patients["total"] == 3
    assert {entry["fullUrl"].rsplit("/", 2)[-2] for entry in patients["entry"]} == {"Patient"}
    page = (await fhir_http.get("/_history", params={"_count": "2"})).json()
    assert page["total"] == 4 and len(page["entry"]) == 2
    seen = [entry["response"]["etag"] + entry["fullUrl"] for entry in page["entry"]]
    links = {link["relation"]: link["url"] for link in page["link"]}
    following = (await fhir_http.get(links["next"])).json()
    assert len(following["entry"]) == 2
    assert "next" not in {link["relation"] for link in following["link"]}
    seen += [entry["response"]["etag"] + entry["fullUrl"] for entry in following["entry"]]
    assert len(set(seen)) == 4
    observation = next(
        entry for entry in page["entry"] + following["entry"] if "Observation" in entry["fullUrl"]
    )
    assert observation["request"] == {"method": "POST", "url": "Observation"}


async def test_since_and_at_select_versions_by_time(fhir_http: httpx.AsyncClient) -> None:
    await three_versions(fhir_http)
    bundle = (await fhir_http.get("/Patient/p1/_history")).json()
    stamp = bundle["entry"][-1]["resource"]["meta"]["lastUpdated"]
    since = (await fhir_http.get("/Patient/p1/_history", params={"_since": stamp})).json()
    assert since["total"] == 3
    future = (await fhir_http.get("/_history", params={"_since": "2999-01-01T00:00:00Z"})).json()
    assert future["total"] == 0 and future["entry"] == []
    at = (await fhir_http.get("/Patient/p1/_history", params={"_at": stamp})).json()
    assert at["total"] == 1  # one version is current at any instant
    past = (await fhir_http.get("/_history", params={"_at": "2000-01-01T00:00:00Z"})).json()
    assert past["total"] == 0


async def test_bad_history_parameters_are_refused(fhir_http: httpx.AsyncClient) -> None:
    for params in ({"_since": "yesterday"}, {"_count": "-1"}, {"name": "x"}):
        response = await fhir_http.get("/_history", params=params)
        assert response.status_code == 400
        assert response.json()["issue"][0]["expression"] == [next(iter(params))]


async def test_every_version_of_a_write_group_reads_back_after_newer_ones(
    store: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    """The current version's content is kept in the resource row alone (f0007): versions made
    in one group, and those a later write supersedes, must still read back as they were."""

    def put(family: str) -> dict[str, Any]:
        resource = {**patient(family), "id": "p1"}
        request = {"method": "PUT", "url": "Patient/p1"}
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": resource, "request": request}],
        }

    await store.transaction(put("赵"))
    await store.transaction_many([put("钱"), put("孙")])  # versions 2 and 3 in one group
    await store.transaction_many([put("李")])
    await store.delete("Patient", "p1")
    families = []
    for version in range(1, 5):
        answer = await fhir_http.get(f"/Patient/p1/_history/{version}")
        assert answer.status_code == 200, answer.text
        families.append(answer.json()["name"][0]["family"])
    assert families == ["赵", "钱", "孙", "李"]
    history = (await fhir_http.get("/Patient/p1/_history")).json()["entry"]
    assert [e.get("resource", {}).get("name", [{}])[0].get("family") for e in history] == [
        None,
        "李",
        "孙",
        "钱",
        "赵",
    ]
