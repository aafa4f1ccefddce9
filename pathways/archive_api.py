"""`GET /api/cases/{case_id}/archive`: the patient archive of one center case as JSON.

Registered under `greenchannel.routers` as `pathways-archive`; the engine's app puts its token
check in front of it, like every route. The shape is documented in docs/patient-archive.md.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from fhir_store import FhirStore, FhirStoreError
from pathways.access import may_read
from pathways.archive import CaseNotFound, build_archive

__all__ = ["build_archive_router"]


def build_archive_router(database: AsyncEngine) -> APIRouter:
    """The archive route over the FHIR store in `database` (which `serve` has migrated)."""
    store = FhirStore(database)  # reads only: it opens no write connections
    router = APIRouter(tags=["cases"], dependencies=[may_read])

    @router.get("/api/cases/{case_id}/archive")
    async def case_archive(case_id: str) -> JSONResponse:
        """The complete record of the case: sections, timeline with intervals, scores, gaps."""
        try:
            archive = await build_archive(store, case_id)
        except CaseNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except FhirStoreError as exc:  # the store is busy or down: say so, with its status
            raise HTTPException(exc.status, f"the FHIR store could not answer: {exc}") from exc
        return JSONResponse(archive)

    return router
