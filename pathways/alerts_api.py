"""`GET /api/alerts`: the running clocks' alerts, open or all, for one case or every case.

Registered under `greenchannel.routers` as `pathway-alerts`; it sits behind the engine's token
gate like every endpoint. The live feed is the websocket at `/api/alerts/websocket`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncEngine

from pathways.access import may_read
from pathways.alert_journal import AlertStatus, list_alerts

__all__ = ["build_alerts_router"]

FHIR_ID = r"^[A-Za-z0-9\-.]{1,64}$"


def build_alerts_router(database: AsyncEngine) -> APIRouter:
    """The alert listing over the journal of `database`."""
    router = APIRouter(tags=["pathways"], dependencies=[may_read])

    @router.get("/api/alerts")
    async def alerts(
        status: AlertStatus = "open",
        case: Annotated[str | None, Query(pattern=FHIR_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        found = await list_alerts(database, status=status, case_id=case, limit=limit)
        return {"status": status, "case": case, "alerts": found}

    return router
