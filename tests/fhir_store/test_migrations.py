"""Migrations of the FHIR store's tables that rewrite rows already stored."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, migrate

pytestmark = pytest.mark.anyio

PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "p1", "gender": "female"}


async def test_f0004_gives_old_sqlite_last_updated_text_the_bound_form(
    store: FhirStore, database: AsyncEngine, fhir_http: httpx.AsyncClient
) -> None:
    stored, _ = await store.update("Patient", "p1", PATIENT)
    instant = stored["meta"]["lastUpdated"]
    async with database.begin() as connection:
        if connection.dialect.name == "sqlite":
            # the text the bulk writer stored before f0004: whole seconds, no microseconds
            for table in ("fhir_resource", "fhir_resource_version"):
                await connection.execute(
                    text(f"UPDATE {table} SET last_updated = substr(last_updated, 1, 19)")
                )
        await connection.execute(text("UPDATE fhir_alembic_version SET version_num = 'f0003'"))
    await migrate(database)
    found = await fhir_http.get("/Patient", params={"_lastUpdated": "eq" + instant})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["p1"]
    history = await fhir_http.get("/Patient/_history", params={"_since": instant})
    assert [e["resource"]["id"] for e in history.json()["entry"]] == ["p1"]
    read = await fhir_http.get("/Patient/p1")
    assert read.json()["meta"]["lastUpdated"] == instant
