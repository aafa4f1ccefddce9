"""`/api/wristbands`: the wristband board and the desk's actions over HTTP.

Registered under `greenchannel.routers` as `wristbands`; the engine's app puts its token check
in front.

- `GET /api/wristbands[?status=in_use|idle|silent|overdue]`: the board, one object per tag
- `PUT /api/wristbands/{tag}` `{"kind": "wristband"|"badge", "practitioner": ID, "label": ..}`:
  register a tag (a badge with its practitioner)
- `POST /api/wristbands/{tag}/bind` `{"patient": ID, "encounter": ID}`: 201; 409 if bound
- `POST /api/wristbands/{tag}/unbind`: 200 with the encounter; 404 unknown tag, 409 not bound
- `POST /api/wristbands/{tag}/return`: the band is back at the desk after a discharge
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.uwb import wristbands
from devices.uwb.errors import UnknownTag, WristbandError
from devices.uwb.zones import ZoneMap, load_zones
from engine.errors import ConfigError

__all__ = ["build_wristband_router"]

_ID = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9\-.]+$")


class _Bind(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient: str = _ID
    encounter: str = _ID


class _Register(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["wristband", "badge"] = "wristband"
    practitioner: str | None = Field(None, min_length=1, max_length=64)
    label: str | None = Field(None, max_length=200)


def build_wristband_router(database: AsyncEngine) -> APIRouter:
    """The wristband API on the engine's database (UWB tables migrated by the engine)."""
    router = APIRouter(prefix="/api/wristbands", tags=["wristbands"])

    async def zones() -> ZoneMap:
        try:  # read per request: an edited zones file counts at once
            return await asyncio.to_thread(load_zones)
        except ConfigError as exc:
            raise HTTPException(500, f"zones file: {exc}") from exc

    def now() -> datetime:
        return datetime.now().astimezone()

    @router.get("")
    async def board(status: str | None = None) -> JSONResponse:
        rows = await wristbands.board(database, await zones(), now())
        found = [row.to_json() for row in rows if status is None or row.status == status]
        return JSONResponse(found)

    @router.put("/{tag_id}")
    async def register(tag_id: str, body: _Register) -> JSONResponse:
        try:
            await wristbands.register(
                database, tag_id, now(), kind=body.kind,
                practitioner_id=body.practitioner, label=body.label,
            )  # fmt: skip
        except WristbandError as exc:
            raise HTTPException(422, str(exc)) from exc
        return JSONResponse({"tag": tag_id, "kind": body.kind})

    @router.post("/{tag_id}/bind", status_code=201)
    async def bind(tag_id: str, body: _Bind) -> JSONResponse:
        await _act(wristbands.bind(database, tag_id, body.patient, body.encounter, now()))
        return JSONResponse(
            {"tag": tag_id, "patient": body.patient, "encounter": body.encounter}, 201
        )

    @router.post("/{tag_id}/unbind")
    async def unbind(tag_id: str) -> JSONResponse:
        encounter = await _act(wristbands.unbind(database, tag_id, now()))
        return JSONResponse({"tag": tag_id, "encounter": encounter})

    @router.post("/{tag_id}/return")
    async def returned(tag_id: str) -> JSONResponse:
        await _act(wristbands.return_tag(database, tag_id, now()))
        return JSONResponse({"tag": tag_id, "returned": True})

    return router


async def _act(action: Any) -> Any:
    try:
        return await action
    except UnknownTag as exc:
        raise HTTPException(404, str(exc)) from exc
    except WristbandError as exc:
        raise HTTPException(409, str(exc)) from exc
