"""FHIR store test fixtures: a migrated database and a store on it (SQLite and PostgreSQL)."""

from __future__ import annotations

import bz2
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, build_router, migrate
from fhir_store.app import create_database
from tests.net import serve_app


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database on the test's URL."""
    engine = create_database(database_url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def store(database: AsyncEngine) -> AsyncIterator[FhirStore]:
    """A store on the test database, closed after the test."""
    fhir = FhirStore(database)
    try:
        yield fhir
    finally:
        await fhir.aclose()


@pytest.fixture
def synthea(shared_data: Path) -> Callable[[str], dict[str, Any]]:
    """Loads a Synthea Bundle from shared/data/fhir/synthea (samply/blaze test data, Apache-2.0)."""

    def load(name: str) -> dict[str, Any]:
        with bz2.open(shared_data / "fhir" / "synthea" / name) as file:
            bundle: dict[str, Any] = json.load(file)
        return bundle

    return load


def encounter(encounter_id: str, subject: dict[str, Any], **elements: Any) -> dict[str, Any]:
    """A finished emergency Encounter of `subject` (a Reference)."""
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished",
        "class": {"code": "EMER"},
        "subject": subject,
        **elements,
    }


@contextlib.asynccontextmanager
async def serve_fhir(store: FhirStore, **router_options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the FHIR router, served by uvicorn on a free 127.0.0.1 port."""
    app = FastAPI()
    app.include_router(build_router(store.database, store=store, **router_options))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=f"{url}/fhir", timeout=30) as http:
        yield http


@pytest.fixture
def fhir_server() -> Any:
    """`serve_fhir` for tests that need their own router options."""
    return serve_fhir


@pytest.fixture
async def fhir_http(store: FhirStore) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the FHIR router, served by uvicorn on a free 127.0.0.1 port."""
    async with serve_fhir(store) as http:
        yield http


async def every_entry(
    http: httpx.AsyncClient,
    path: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every entry of a search, its next links followed; each page must answer 200."""
    found: list[dict[str, Any]] = []
    response = await http.get(path, params=params, headers=headers)
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        found += bundle.get("entry", [])
        following = [link["url"] for link in bundle.get("link", []) if link["relation"] == "next"]
        if not following:
            return found
        response = await http.get(following[0], headers=headers)
