"""`/api/wristbands` over real HTTP (uvicorn) on SQLite and PostgreSQL: register, bind, the
board, unbind and return, and the answers a desk application must act on (404, 409, 422)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.uwb.api import build_wristband_router
from tests.net import serve_app

pytestmark = pytest.mark.anyio


async def test_the_desk_binds_sees_the_board_unbinds_and_is_told_what_is_wrong(
    database: AsyncEngine,
) -> None:
    app = FastAPI()
    app.include_router(build_wristband_router(database))
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        bound = await http.post("/api/wristbands/T-1/bind",
                                json={"patient": "p1", "encounter": "v1"})  # fmt: skip
        assert bound.status_code == 201, bound.text
        again = await http.post("/api/wristbands/T-1/bind",
                                json={"patient": "p2", "encounter": "v2"})  # fmt: skip
        assert again.status_code == 409
        assert "bound to encounter v1" in again.json()["detail"]
        badge = await http.put("/api/wristbands/B-7", json={"kind": "badge"})
        assert badge.status_code == 422
        assert "practitioner" in badge.json()["detail"]
        badge = await http.put("/api/wristbands/B-7", json={"kind": "badge", "practitioner": "li"})
        assert badge.status_code == 200, badge.text
        board = (await http.get("/api/wristbands")).json()
        assert [(b["tag_id"], b["kind"], b["status"], b["encounter_id"]) for b in board] == [
            ("B-7", "badge", "idle", None),
            ("T-1", "wristband", "silent", "v1"),  # bound, never heard
        ]
        silent = (await http.get("/api/wristbands", params={"status": "silent"})).json()
        assert [b["tag_id"] for b in silent] == ["T-1"]
        off = await http.post("/api/wristbands/T-1/unbind")
        assert (off.status_code, off.json()) == (200, {"tag": "T-1", "encounter": "v1"})
        assert (await http.post("/api/wristbands/T-1/unbind")).status_code == 409
        assert (await http.post("/api/wristbands/T-9/unbind")).status_code == 404
        assert (await http.post("/api/wristbands/T-1/return")).status_code == 409  # it is back
        missing = await http.post("/api/wristbands/T-2/bind", json={"patient": "p1"})
        assert missing.status_code == 422
