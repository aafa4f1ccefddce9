"""`/api/registry`: one case's registry record with its problems, and a center's readiness.

Registered under `greenchannel.routers` as `registry-record`; the engine's app puts its token
check in front of it, like every route (registry staff use a `registry-staff` token).

- `GET /api/registry/{registry}/cases/{case_id}/record`: the record (payload, versions, each
  field's FHIR source), the validation problems and the completeness report;
- `GET /api/registry/check?center=chest_pain&month=2026-10[&registry=cpc]` or `&case=ID`: one
  report per case, as `greenchannel registry check --json` prints them.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.errors import ConfigError
from fhir_store import FhirStore, FhirStoreError
from pathways.registry import (
    CaseNotFound,
    RegistryMapping,
    build_record,
    check_cases,
    completeness_report,
    registry_mapping,
    validate_record,
)
from pathways.vocabulary import CENTERS, Center

__all__ = ["build_registry_record_router"]

Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
DEFAULT_REGISTRY: dict[Center, str] = {"chest_pain": "cpc"}


def build_registry_record_router(database: AsyncEngine) -> APIRouter:
    """The registry record routes over the FHIR store in `database` (read only)."""
    store = FhirStore(database)
    router = APIRouter(prefix="/api/registry", tags=["registry"], lifespan=store.closing)

    async def mapping(name: str) -> RegistryMapping:
        try:  # read per request (cached while the file is unchanged): an edit counts at once
            return await asyncio.to_thread(registry_mapping, name)
        except ConfigError as exc:
            status = 404 if "no registry mapping" in exc.message else 500
            raise HTTPException(status, str(exc)) from exc

    @router.get("/{registry}/cases/{case_id}/record")
    async def record(registry: str, case_id: str) -> JSONResponse:
        """The case's record for the registry, its problems and what would fill them."""
        chosen = await mapping(registry)
        try:
            built = await build_record(store, case_id, chosen.registry, mapping=chosen)
        except CaseNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except FhirStoreError as exc:
            raise HTTPException(exc.status, f"the FHIR store could not answer: {exc}") from exc
        problems = validate_record(built, chosen)
        return JSONResponse(
            {
                "record": built.as_dict(),
                "ready": not any(p.severity == "error" for p in problems),
                "problems": [p.as_dict() for p in problems],
                "completeness": completeness_report(built, problems),
            }
        )

    @router.get("/check")
    async def check(
        center: str,
        month: Month | None = None,
        case: str | None = None,
        registry: str | None = None,
    ) -> JSONResponse:
        """Each case of the center counted in the month (or the one case): ready or not."""
        known = next((c for c in CENTERS if c == center), None)
        if known is None:
            raise HTTPException(404, f"no center {center!r}; the centers are {', '.join(CENTERS)}")
        if month is None and case is None:
            raise HTTPException(400, "give month=YYYY-MM or case=ID")
        name = registry or DEFAULT_REGISTRY.get(known)
        if name is None:
            raise HTTPException(404, f"no registry mapping for {center} cases yet; name one")
        chosen = await mapping(name)
        if chosen.center != known:
            raise HTTPException(400, f"the {chosen.registry} mapping is for {chosen.center} cases")
        try:
            reports = await check_cases(store, chosen, known, case_id=case, month=month)
        except CaseNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except FhirStoreError as exc:
            raise HTTPException(exc.status, f"the FHIR store could not answer: {exc}") from exc
        for report in reports:
            report.pop("lines", None)
        return JSONResponse(
            {
                "center": known,
                "registry": chosen.registry,
                "mapping_version": chosen.mapping_version,
                "month": month,
                "ready": sum(1 for r in reports if r["ready"]),
                "cases": reports,
            }
        )

    return router
