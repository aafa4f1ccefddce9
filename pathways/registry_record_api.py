"""`/api/registry`: one case's registry record with its problems, and a center's readiness.

Registered under `greenchannel.routers` as `registry-record`; the engine's app puts its token
check in front of it, like every route, and every route here is for registry staff (and admins):
a token of another role (a clinician's) gets 403, since a record holds the patient's identity
and the whole stay.

- `GET /api/registry/{registry}/cases/{case_id}/record`: the record (payload, versions, each
  field's FHIR source), the validation problems and the completeness report;
- `GET /api/registry/check?center=chest_pain&month=2026-10[&registry=cpc]` or `&case=ID`: one
  report per case, as `greenchannel registry check --json` prints them;
- `GET /api/registry/{registry}/export?month=2026-10&format=xlsx` (or `&case=ID`,
  `&incomplete=flag`): a file-template registry's CSV or XLSX as an attachment; the
  `X-Registry-Exported`, `-Skipped` and `-Flagged` headers list the case ids.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.auth import require_role
from engine.errors import ConfigError
from fhir_store import FhirStore, FhirStoreError
from pathways.registry import (
    CaseNotFound,
    NotATemplate,
    RegistryMapping,
    build_record,
    check_cases,
    checked_records,
    completeness_report,
    export_file,
    registry_mapping,
    validate_record,
)
from pathways.vocabulary import CENTERS, Center

__all__ = ["build_registry_record_router"]

Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]
DEFAULT_REGISTRY: dict[Center, str] = {
    "chest_pain": "cpc",
    "stroke": "wso",
    "trauma": "trauma-regional",
}
REGISTRY_ROLES = ("registry-staff", "admin")


def build_registry_record_router(database: AsyncEngine) -> APIRouter:
    """The registry record routes over the FHIR store in `database` (read only)."""
    store = FhirStore(database)
    router = APIRouter(
        prefix="/api/registry",
        tags=["registry"],
        lifespan=store.closing,
        dependencies=[Depends(require_role(*REGISTRY_ROLES))],
    )

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
        hospital_id: str | None = None,
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
            params = {"hospital_id": hospital_id} if hospital_id else {}
            reports = await check_cases(
                store, chosen, known, case_id=case, month=month, params=params
            )
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

    @router.get("/{registry}/export")
    async def export(
        registry: str,
        month: Month | None = None,
        case: str | None = None,
        format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "xlsx",
        incomplete: Annotated[str, Query(pattern="^(skip|flag)$")] = "skip",
        hospital_id: str | None = None,
    ) -> Response:
        """The registry's file template filled with the month's cases (or one case)."""
        if (month is None) == (case is None):
            raise HTTPException(400, "give month=YYYY-MM or case=ID (one of them)")
        chosen = await mapping(registry)
        if chosen.template is None:
            raise HTTPException(
                400, f"the {chosen.registry} registry has no file template (it takes records "
                "by its API): GET /api/registry/{registry}/cases/{case_id}/record",
            )  # fmt: skip
        params = {"hospital_id": hospital_id} if hospital_id else {}
        try:
            checked = await checked_records(
                store, chosen, chosen.center, case_id=case, month=month, params=params
            )
            exported = export_file(
                chosen, checked, format, incomplete="flag" if incomplete == "flag" else "skip",
                suffix=month or case or "",
            )  # fmt: skip
        except CaseNotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        except NotATemplate as exc:
            raise HTTPException(400, str(exc)) from exc
        except FhirStoreError as exc:
            raise HTTPException(exc.status, f"the FHIR store could not answer: {exc}") from exc
        return Response(
            exported.content,
            media_type=exported.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{exported.filename}"',
                "X-Registry-Mapping-Version": exported.mapping_version,
                "X-Registry-Exported": ",".join(exported.exported),
                "X-Registry-Skipped": ",".join(exported.skipped),
                "X-Registry-Flagged": ",".join(exported.flagged),
            },
        )

    return router
