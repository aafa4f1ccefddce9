"""A store with read connections of its own (`own_readers`, the pathway subscriber's): the same
answers as reads on the caller's engine, writes seen at once, and its connections closed by
`aclose` (SQLite file and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, NotFound, parse_search

pytestmark = pytest.mark.anyio

SEARCHES: list[tuple[str, list[tuple[str, str]]]] = [
    ("EpisodeOfCare", [("patient", "Patient/p1,Patient/p3"), ("status", "active")]),
    ("EpisodeOfCare", [("patient", "Patient/p2"), ("status", "finished")]),
    ("Patient", [("_id", "p1,p2,p9"), ("_sort", "-_id")]),
    ("Patient", [("gender", "female"), ("_count", "1")]),
]


def episode(identifier: str, patient: str, status: str) -> dict[str, Any]:
    return {
        "resourceType": "EpisodeOfCare",
        "id": identifier,
        "status": status,
        "patient": {"reference": patient},
    }


async def answers(store: FhirStore) -> list[tuple[list[str], int | None, bool]]:
    found = []
    for kind, pairs in SEARCHES:
        page = await store.search(parse_search(kind, pairs, strict=True))
        ids = [json.loads(content)["id"] for content in page.contents]
        found.append((ids, page.total, page.next_cursor is not None))
    return found


async def test_own_readers_answer_as_the_callers_engine_does(
    database: AsyncEngine, store: FhirStore
) -> None:
    for n, gender in ((1, "female"), (2, "male"), (3, "female")):
        await store.update(
            "Patient", f"p{n}", {"resourceType": "Patient", "id": f"p{n}", "gender": gender}
        )
    await store.update("EpisodeOfCare", "e1", episode("e1", "Patient/p1", "active"))
    await store.update("EpisodeOfCare", "e2", episode("e2", "Patient/p2", "finished"))
    await store.update("EpisodeOfCare", "e3", episode("e3", "Patient/p3", "active"))
    own = FhirStore(database, own_readers=True)
    try:
        expected = await answers(store)
        assert expected[0][0] == ["e1", "e3"] and expected[2][0] == ["p2", "p1"]
        assert await answers(own) == expected
        # a write through another store is read at once (no snapshot held between reads)
        await store.update("EpisodeOfCare", "e1", episode("e1", "Patient/p1", "finished"))
        assert (await answers(own))[0][0] == ["e3"]
        assert (await own.read("EpisodeOfCare", "e1"))["status"] == "finished"
        assert (await own.vread("EpisodeOfCare", "e1", "1"))["status"] == "active"
        with pytest.raises(NotFound):
            await own.read("Patient", "p9")
    finally:
        await own.aclose()


async def test_aclose_closes_the_read_connections(database: AsyncEngine) -> None:
    own = FhirStore(database, own_readers=True)
    await own.search(parse_search("Patient", [], strict=True))
    reader = own._reader  # what aclose must close
    assert reader is not None, "the reads ran on the store's own engine"
    assert reader.pool.checkedin() >= 1
    await own.aclose()
    assert reader.pool.checkedin() == 0
