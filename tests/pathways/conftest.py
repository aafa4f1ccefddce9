"""Pathway test fixtures: a migrated FHIR database (SQLite and PostgreSQL), a store on it, the
shipped pathway files, and a pathway subscriber that processes what was written so far."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore
from pathways.definitions import Pathways, load_pathways
from pathways.subscriber import PathwaySubscriber
from tests.fhir_store.conftest import database

__all__ = ["database"]  # the migrated FHIR database fixture, shared with the store's tests

CST = timezone(timedelta(hours=8))


@pytest.fixture
async def store(database: AsyncEngine) -> AsyncIterator[FhirStore]:
    fhir = FhirStore(database, timezone=CST)
    try:
        yield fhir
    finally:
        await fhir.aclose()


@pytest.fixture(scope="session")
def pathways() -> Pathways:
    return load_pathways()


@pytest.fixture
async def subscriber(database: AsyncEngine, pathways: Pathways) -> AsyncIterator[Any]:
    """The pathway subscriber, published; call `catch_up()` to process the events so far."""
    made: list[PathwaySubscriber] = []

    async def build() -> PathwaySubscriber:
        subscriber = PathwaySubscriber(database, name="pathways", timezone=CST, pathways=pathways)
        await subscriber.start()
        made.append(subscriber)
        return subscriber

    yield build
    for subscriber in made:
        await subscriber.aclose()
