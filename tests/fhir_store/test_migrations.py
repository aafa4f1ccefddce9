"""Migrations of the FHIR store's tables that rewrite rows already stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, migrate
from fhir_store.schema import MIGRATIONS_DIR
from tests.fhir_store.conftest import encounter

pytestmark = pytest.mark.anyio

PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "p1", "gender": "female"}


async def _downgrade(database: AsyncEngine, revision: str) -> None:
    """Take the store's tables back to `revision` with the migrations' own downgrades."""
    from alembic import command
    from alembic.config import Config

    def downgrade(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)

    async with database.begin() as connection:
        await connection.run_sync(downgrade)


async def test_f0004_gives_old_sqlite_last_updated_text_the_bound_form(
    store: FhirStore, database: AsyncEngine, fhir_http: httpx.AsyncClient
) -> None:
    stored, _ = await store.update("Patient", "p1", PATIENT)
    instant = stored["meta"]["lastUpdated"]
    await _downgrade(database, "f0003")
    async with database.begin() as connection:
        if connection.dialect.name == "sqlite":
            # the text the bulk writer stored before f0004: whole seconds, no microseconds
            for table in ("fhir_resource", "fhir_resource_version"):
                await connection.execute(
                    text(f"UPDATE {table} SET last_updated = substr(last_updated, 1, 19)")
                )
    await migrate(database)
    found = await fhir_http.get("/Patient", params={"_lastUpdated": "eq" + instant})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["p1"]
    history = await fhir_http.get("/Patient/_history", params={"_since": instant})
    assert [e["resource"]["id"] for e in history.json()["entry"]] == ["p1"]
    read = await fhir_http.get("/Patient/p1")
    assert read.json()["meta"]["lastUpdated"] == instant


async def test_f0006_numbers_the_stored_resources_and_searches_find_them_by_their_number(
    store: FhirStore, database: AsyncEngine, fhir_http: httpx.AsyncClient
) -> None:
    for patient_id, family in (("p1", "Wang"), ("p2", "Li")):
        await store.update(
            "Patient",
            patient_id,
            {"resourceType": "Patient", "id": patient_id, "name": [{"family": family}]},
        )
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"code": "EMER"},
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2026-11-25T08:00:00+08:00", "end": "2026-11-25T09:00:00+08:00"},
    }
    await store.update("Encounter", "e1", encounter)
    # the tables as f0005 left them: index rows found by (type, id), no numbers
    await _downgrade(database, "f0005")
    await migrate(database)

    async def ids(path: str, **params: str) -> list[str]:
        answer = await fhir_http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return [entry["resource"]["id"] for entry in answer.json().get("entry", [])]

    # a date condition and a sort read the index by the resource's number
    assert await ids("/Encounter", date="ge2026-11-25", subject="Patient/p1") == ["e1"]
    assert await ids("/Encounter", date="lt2026-01-01") == []
    assert await ids("/Patient", _sort="family") == ["p2", "p1"]
    assert await ids("/Patient", _sort="-family") == ["p1", "p2"]
    # an _include follows the references of the rows found by number; _has the other way
    assert await ids("/Encounter", _id="e1", _include="Encounter:subject") == ["e1", "p1"]
    assert await ids("/Patient", **{"_has:Encounter:subject:status": "finished"}) == ["p1"]
    assert sorted(await ids("/Patient/p1/$everything")) == ["e1", "p1"]
    # a resource stored before the migration changes: its old rows are replaced, not kept
    await store.update(
        "Patient", "p1", {"resourceType": "Patient", "id": "p1", "name": [{"family": "Zhao"}]}
    )
    assert await ids("/Patient", family="Wang") == []
    assert await ids("/Patient", family="Zhao") == ["p1"]
    # a new resource is numbered after those the migration numbered
    await store.update(
        "Patient", "p3", {"resourceType": "Patient", "id": "p3", "name": [{"family": "Wang"}]}
    )
    assert await ids("/Patient", family="Wang") == ["p3"]
    async with database.connect() as connection:
        keys = dict((await connection.execute(text("SELECT id, key FROM fhir_resource"))).all())
    assert None not in keys.values() and len(set(keys.values())) == len(keys) == 4
    assert keys["p3"] == max(keys.values())


async def _current_versions_with_content(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        count = await connection.scalar(
            text(
                "SELECT count(*) FROM fhir_resource_version v JOIN fhir_resource r "
                "ON r.resource_type = v.resource_type AND r.id = v.resource_id "
                "AND r.version_id = v.version_id WHERE v.content IS NOT NULL"
            )
        )
    return int(count or 0)


async def test_f0007_keeps_the_current_content_once_and_every_version_readable(
    store: FhirStore, database: AsyncEngine, fhir_http: httpx.AsyncClient
) -> None:
    def patient(family: str) -> dict[str, Any]:
        return {"resourceType": "Patient", "id": "p1", "name": [{"family": family}]}

    await store.update("Patient", "p1", patient("Wang"))
    await store.update("Patient", "p1", patient("Li"))
    await store.update("Patient", "p2", {"resourceType": "Patient", "id": "p2"})
    await store.delete("Patient", "p2")
    await _downgrade(database, "f0006")  # every version's row with its content, as before
    assert await _current_versions_with_content(database) == 1  # p1's version 2
    await migrate(database)
    assert await _current_versions_with_content(database) == 0

    async def family(path: str) -> str:
        answer = await fhir_http.get(path)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["name"][0]["family"])

    assert await family("/Patient/p1/_history/1") == "Wang"
    assert await family("/Patient/p1/_history/2") == "Li"
    history = (await fhir_http.get("/Patient/_history")).json()["entry"]
    versions = {
        (entry["response"]["etag"], entry["fullUrl"].rsplit("/", 1)[1]): entry.get("resource", {})
        for entry in history
    }
    assert versions[('W/"1"', "p1")]["name"][0]["family"] == "Wang"
    assert versions[('W/"2"', "p1")]["name"][0]["family"] == "Li"
    assert versions[('W/"1"', "p2")]["id"] == "p2"
    assert versions[('W/"2"', "p2")] == {}  # the deletion
    # a new version: the one it supersedes is read from its own row from now on
    await store.update("Patient", "p1", patient("Zhao"))
    assert await family("/Patient/p1/_history/2") == "Li"
    assert await family("/Patient/p1/_history/3") == "Zhao"
    assert await family("/Patient/p1") == "Zhao"
    assert await _current_versions_with_content(database) == 0


async def test_sqlite_reads_a_searchs_resources_by_their_number(
    store: FhirStore, database: AsyncEngine, fhir_http: httpx.AsyncClient
) -> None:
    """Without statistics SQLite read every resource of the type and checked each against the
    conditions' `key IN (...)`: ten times slower on a store of 70,000 resources. With those f0006
    gives it, it reads the few resources the conditions found, by their number."""
    if database.dialect.name != "sqlite":
        pytest.skip("SQLite's planner")
    from sqlalchemy import event

    searches: list[tuple[str, Any]] = []

    def capture(_c: Any, _cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        if "fhir_token_index" in sql and "fhir_reference_index" in sql:
            searches.append((sql, parameters))

    event.listen(database.sync_engine, "before_cursor_execute", capture)
    try:
        found = await fhir_http.get(
            "/Observation", params={"subject": "Patient/p1", "code": "http://loinc.org|29463-7"}
        )
    finally:
        event.remove(database.sync_engine, "before_cursor_execute", capture)
    assert found.status_code == 200 and searches
    sql, parameters = searches[0]
    async with database.connect() as connection:
        plan = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, parameters)).all()
    steps = [row[3] for row in plan]
    assert any("fhir_resource USING INDEX ix_fhir_resource_key" in step for step in steps), steps


async def test_f0008_drops_the_rows_that_shared_rows_stand_for_and_searches_still_answer(
    store: FhirStore, database: AsyncEngine, fhir_http: httpx.AsyncClient
) -> None:
    await store.update(
        "Patient",
        "p1",
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Wang", "given": ["Wu"]}]},
    )
    group = {"resourceType": "Group", "id": "p1", "type": "person", "actual": True}
    await store.update("Group", "p1", group)
    for encounter_id, subject in (("e1", "Patient/p1"), ("e2", "Group/p1")):
        await store.update(
            "Encounter", encounter_id, encounter(encounter_id, {"reference": subject})
        )

    async def copies() -> list[tuple[str, str, str]]:
        async with database.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT resource_type, param, target_type FROM fhir_reference_index "
                    "WHERE param = 'patient' UNION ALL "
                    "SELECT resource_type, param, exact FROM fhir_string_index "
                    "WHERE param = 'phonetic' ORDER BY 1, 3"
                )
            )
            return [tuple(row) for row in rows]

    async def found(path: str, **params: str) -> list[str]:
        answer = await fhir_http.get(path, params=params)
        assert answer.status_code == 200, answer.text
        return sorted(entry["resource"]["id"] for entry in answer.json().get("entry", []))

    assert await copies() == []  # written shared
    await _downgrade(database, "f0007")  # the copies as the store wrote them before
    assert await copies() == [
        ("Encounter", "patient", "Patient"),
        ("Patient", "phonetic", "Wang"),
        ("Patient", "phonetic", "Wu"),
    ]
    await migrate(database)
    assert await copies() == []
    assert await found("/Encounter", patient="p1") == ["e1"]
    assert await found("/Patient", phonetic="wu") == ["p1"]
