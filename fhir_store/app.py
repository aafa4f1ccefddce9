"""Run the FHIR store alone: a FastAPI app on one database URL (`uvicorn --factory`).

    python -c "import uvicorn, fhir_store.app as a; uvicorn.run(a.create_app('sqlite+aiosqlite:///fhir.db'))"

The greenchannel app does not use this module: it mounts `build_router` with its own auth.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fhir_store._background import stop as stop_background_process
from fhir_store._writer import ping_after_idle, sqlite_pragmas
from fhir_store.router import build_router
from fhir_store.schema import migrate
from fhir_store.store import FhirStore

__all__ = ["create_app", "create_database"]


def create_database(url: str) -> AsyncEngine:
    """An AsyncEngine for `url`; SQLite connections get the same settings as the writer's,
    PostgreSQL connections are checked before use after sitting idle, as the store's own."""
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    else:
        ping_after_idle(engine.sync_engine)
    return engine


def create_app(database_url: str, *, validate_structure: bool = True) -> FastAPI:
    """A standalone FHIR server on `database_url`, migrated at start, without authentication.

    It owns its process: it collects garbage less often than CPython's default and freezes
    what start-up built (search parameters, FHIRPath, models), as `greenchannel serve` does
    (a Synthea transaction allocates about a million objects; the default threshold of 700
    had the collector walk them and the models over and over).
    """
    database = create_database(database_url)
    store = FhirStore(database, validate_structure=validate_structure)
    gc.set_threshold(10_000, 20, 20)  # engine.pipeline.GC_THRESHOLD; the store may not import it

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate(database)
        gc.freeze()
        try:
            yield
        finally:
            await store.aclose()
            await database.dispose()
            await asyncio.to_thread(stop_background_process)

    app = FastAPI(title="greenchannel FHIR store", lifespan=lifespan)
    app.include_router(build_router(database, store=store))
    return app
