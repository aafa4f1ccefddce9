"""Keyset paging: next and previous links that neither skip nor repeat a resource while other
resources are created, updated and deleted between page requests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_store import FhirStore

pytestmark = pytest.mark.anyio


def patient(resource_id: str, birth_date: str | None, active: bool = True) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id, "active": active}
    if birth_date is not None:
        resource["birthDate"] = birth_date
    return resource


BIRTH_DATES = {
    f"p{number:02}": (
        None if number % 4 == 3 else f"{1950 + (number * 7) % 13}-01-0{1 + number % 3}"
    )
    for number in range(12)
}


@pytest.fixture
async def twelve(store: FhirStore) -> FhirStore:
    for resource_id, birth_date in BIRTH_DATES.items():
        await store.update("Patient", resource_id, patient(resource_id, birth_date))
    return store


async def page(
    http: httpx.AsyncClient, url: str, **params: str
) -> tuple[list[str], dict[str, str]]:
    response = await http.get(url, params=params) if params else await http.get(url)
    assert response.status_code == 200, response.text
    bundle = response.json()
    found = [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
    return found, {link["relation"]: link["url"] for link in bundle["link"]}


def expected_order(birth_dates: dict[str, str | None], descending: bool) -> list[str]:
    """Patients by birth date (missing ones last), then id: what `_sort=[-]birthdate` gives."""
    dated = sorted((date, key) for key, date in birth_dates.items() if date is not None)
    if descending:  # descending by date, ids still ascending among equal dates
        dated = sorted(dated, key=lambda item: item[1])
        dated = sorted(dated, key=lambda item: item[0], reverse=True)
    undated = sorted(key for key, date in birth_dates.items() if date is None)
    return [key for _, key in dated] + undated


async def test_pages_by_id_neither_skip_nor_repeat_while_others_are_written(
    twelve: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    seen, links = await page(fhir_http, "/Patient", _count="3")
    assert seen == ["p00", "p01", "p02"] and "previous" not in links
    # between the pages: one created before the cursor, one deleted already seen, one deleted
    # not yet seen, one updated; an offset would now repeat or skip
    await twelve.update("Patient", "a00", patient("a00", "2000-01-01"))
    await twelve.delete("Patient", "p01")
    await twelve.delete("Patient", "p10")
    await twelve.update("Patient", "p05", patient("p05", "1999-09-09", active=False))
    await twelve.update("Patient", "p99", patient("p99", None))
    while "next" in links:
        found, links = await page(fhir_http, links["next"])
        seen += found
    assert seen == [key for key in sorted(BIRTH_DATES) if key != "p10"] + ["p99"]


@pytest.mark.parametrize("descending", [False, True])
async def test_sorted_pages_across_missing_values_match_one_big_page(
    twelve: FhirStore, fhir_http: httpx.AsyncClient, descending: bool
) -> None:
    sort = "-birthdate" if descending else "birthdate"
    seen, links = await page(fhir_http, "/Patient", _sort=sort, _count="2")
    await twelve.update("Patient", "a00", patient("a00", "1900-01-01"))  # sorts before the cursor
    await twelve.update("Patient", seen[-1], patient(seen[-1], BIRTH_DATES[seen[-1]], active=False))
    while "next" in links:
        found, links = await page(fhir_http, links["next"])
        assert len(found) <= 2
        seen += found
    expected = expected_order(BIRTH_DATES, descending)
    if descending:  # a00 sorts after the cursor when descending: it is found, once
        expected = [key for key in expected_order({**BIRTH_DATES, "a00": "1900-01-01"}, True)]
    assert seen == expected


async def test_previous_links_give_the_pages_back(
    twelve: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    pages: list[list[str]] = []
    found, links = await page(fhir_http, "/Patient", _sort="-birthdate", _count="5")
    pages.append(found)
    while "next" in links:
        found, links = await page(fhir_http, links["next"])
        pages.append(found)
    assert len(pages) == 3
    backwards: list[list[str]] = []
    while "previous" in links:
        found, links = await page(fhir_http, links["previous"])
        backwards.append(found)
    assert backwards == pages[-2::-1]
    assert "next" in links


async def test_total_stays_on_every_page(twelve: FhirStore, fhir_http: httpx.AsyncClient) -> None:
    response = await fhir_http.get("/Patient", params={"_count": "5", "_total": "accurate"})
    bundle = response.json()
    assert bundle["total"] == len(BIRTH_DATES)
    following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert (await fhir_http.get(following)).json()["total"] == len(BIRTH_DATES)


@pytest.mark.parametrize(
    "params",
    [
        {"_cursor": "not-a-cursor"},
        {"_cursor": "eyJrIjpbXX0"},  # base64 of {"k":[]}
    ],
)
async def test_damaged_cursors_are_400(
    twelve: FhirStore, fhir_http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await fhir_http.get("/Patient", params=params)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["_cursor"]


async def test_a_cursor_is_refused_with_another_sort(
    twelve: FhirStore, fhir_http: httpx.AsyncClient
) -> None:
    _, links = await page(fhir_http, "/Patient", _sort="birthdate", _count="2")
    response = await fhir_http.get(links["next"].replace("_sort=birthdate", "_sort=-birthdate"))
    assert response.status_code == 400
    assert "another _sort" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize("sort", ["_lastUpdated", "-_lastUpdated", "family", "-family"])
async def test_paging_by_instant_and_text_keys_matches_one_big_page(
    store: FhirStore, fhir_http: httpx.AsyncClient, sort: str
) -> None:
    # names that PostgreSQL's default collation would order differently from code points
    families = ["o'Brien", "OBrien", "Ob-rien", "obrien", "Äbel", "abel", "Zed", "zed", "_x"]
    for number, family in enumerate(families):
        resource = {"resourceType": "Patient", "id": f"n{number}", "name": [{"family": family}]}
        await store.update("Patient", f"n{number}", resource)
    everything, _ = await page(fhir_http, "/Patient", _sort=sort, _count="100")
    assert sorted(everything) == sorted(f"n{number}" for number in range(len(families)))
    seen, links = await page(fhir_http, "/Patient", _sort=sort, _count="2")
    while "next" in links:
        found, links = await page(fhir_http, links["next"])
        seen += found
    assert seen == everything
