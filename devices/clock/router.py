"""`GET /api/clocks`: every source's clock offset, drift, status and the hosts' NTP offsets.

Registered under `greenchannel.routers` as `clocks`; behind the engine's token gate, and for
the roles admin and interface-analyst only (the clocks name every interface's senders).
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.clock.report import clocks_report
from engine.auth import TokenGate

__all__ = ["build_clocks_router"]

ROLES = frozenset({"admin", "interface-analyst"})
REPORT_ZONE = timezone(timedelta(hours=8))


def build_clocks_router(database: AsyncEngine) -> APIRouter:
    """The clock report over the clock tables of `database` (read only)."""
    gate = TokenGate(database)
    router = APIRouter(tags=["clocks"])

    @router.get("/api/clocks")
    async def clocks(request: Request) -> dict[str, Any]:
        role = await gate.role_for(request.headers.get("authorization"))
        # The engine's gate already let the request in: a token it knows that no stored
        # token matches is the settings' admin token (GREENCHANNEL_ADMIN_TOKEN).
        if role is not None and role not in ROLES:
            raise HTTPException(
                403, f"the clocks are for the roles {', '.join(sorted(ROLES))}; "
                f"this token has the role {role!r}"
            )  # fmt: skip
        return await clocks_report(database, REPORT_ZONE)

    return router
