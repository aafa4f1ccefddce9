"""`/api/qc`: the QC report, its chart and one case's indicator values over HTTP.

Registered under `greenchannel.routers` as `qc`; the engine's app puts its token check in front.

- `GET /api/qc/{center}?from=YYYY-MM&to=YYYY-MM[&standard=ID][&indicator=ID...][&format=json|csv]`
- `GET /api/qc/{center}/plot.png?from=&to=[&standard=][&indicator=...]`
- `GET /api/qc/cases/{case_id}[?standard=ID]`
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.errors import ConfigError
from fhir_store import FhirStore
from pathways.access import may_read
from pathways.case_store import NotACase
from pathways.indicator_definitions import Catalogue
from pathways.indicator_loader import indicator_definitions
from pathways.months import months_between
from pathways.qc import QcReport
from pathways.qc_output import as_csv
from pathways.qc_service import build_reports, case_results, check_center, reports_as_dict

__all__ = ["build_qc_router"]

Month = Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")]


@dataclass(frozen=True, slots=True)
class _Query:
    """What a report is asked for: center, months, standard, indicators."""

    center: str
    first: str
    last: str
    standard: str | None
    indicators: list[str]


def _query(
    center: str,
    first: Annotated[Month, Query(alias="from")],
    last: Annotated[Month, Query(alias="to")],
    standard: str | None = None,
    indicator: Annotated[list[str] | None, Query()] = None,
) -> _Query:
    return _Query(center, first, last, standard, indicator or [])


def build_qc_router(database: AsyncEngine) -> APIRouter:
    """The QC API over the FHIR store in `database` (read only)."""
    store = FhirStore(database)

    router = APIRouter(
        prefix="/api/qc", tags=["qc"], lifespan=store.closing, dependencies=[may_read]
    )

    async def catalogue() -> Catalogue:
        try:  # the loader the subscriber uses: an edited definition counts at once for both
            return await asyncio.to_thread(indicator_definitions().current)
        except ConfigError as exc:
            raise HTTPException(500, f"indicator definitions: {exc}") from exc

    async def reports(query: _Query) -> tuple[list[QcReport], list[str]]:
        try:
            known = check_center(query.center)
            months = months_between(query.first, query.last)
        except (ConfigError, ValueError) as exc:
            raise HTTPException(404 if isinstance(exc, ConfigError) else 400, str(exc)) from exc
        definitions = await catalogue()
        try:
            found = await build_reports(
                store, definitions, known, months[0], months[-1], query.standard, query.indicators
            )
        except ConfigError as exc:  # an unknown standard or indicator
            raise HTTPException(404, str(exc)) from exc
        return found, months

    @router.get("/cases/{case_id}")
    async def case(case_id: str, standard: str | None = None) -> JSONResponse:
        definitions = await catalogue()
        try:
            return JSONResponse(await case_results(store, definitions, case_id, standard))
        except (NotACase, ConfigError) as exc:  # no such case, or no such standard
            raise HTTPException(404, str(exc)) from exc

    @router.get("/{center}")
    async def report(
        query: Annotated[_Query, Depends(_query)],
        format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    ) -> Response:
        found, months = await reports(query)
        if format == "csv":
            text = await asyncio.to_thread(as_csv, found)
            return Response(text, media_type="text/csv; charset=utf-8")
        return JSONResponse(reports_as_dict(found, check_center(query.center), months))

    @router.get("/{center}/plot.png")
    async def plot(query: Annotated[_Query, Depends(_query)]) -> Response:
        # matplotlib is imported on the first chart, not when `serve` mounts the router.
        from pathways.qc_plot import NothingToPlot, render_plot

        found, _ = await reports(query)
        try:
            png = await asyncio.to_thread(render_plot, found, query.indicators)
        except NothingToPlot as exc:
            raise HTTPException(404, str(exc)) from exc
        return Response(png, media_type="image/png")

    return router
