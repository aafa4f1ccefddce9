"""FHIR store test fixtures: a migrated database and a store on it (SQLite and PostgreSQL)."""

from __future__ import annotations

import bz2
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database


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
