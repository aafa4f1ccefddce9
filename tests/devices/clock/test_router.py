"""`GET /api/clocks` on a real uvicorn server: the clocks for admin and interface-analyst
tokens, 403 naming the role for the others."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import async_sessionmaker

from devices.clock import migrate as migrate_clocks
from devices.clock.router import build_clocks_router
from engine.auth import ApiToken, hash_token
from engine.database import create_database_engine, migrate
from tests.net import serve_app

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=timezone(timedelta(hours=8)))


async def test_clocks_are_for_admins_and_interface_analysts(database_url: str) -> None:
    database = create_database_engine(database_url)
    await migrate(database)
    await migrate_clocks(database)
    sessions = async_sessionmaker(database)
    async with sessions() as session, session.begin():
        for role in ("interface-analyst", "clinician"):
            session.add(ApiToken(name=role, role=role, token_sha256=hash_token(role),
                                 created_at=NOW))  # fmt: skip
    app = FastAPI()
    app.include_router(build_clocks_router(database))
    try:
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            allowed = await client.get(
                "/api/clocks", headers={"Authorization": "Bearer interface-analyst"}
            )
            refused = await client.get("/api/clocks", headers={"Authorization": "Bearer clinician"})
    finally:
        await database.dispose()
    assert allowed.status_code == 200
    assert allowed.json() == {"sources": [], "hosts": []}
    assert refused.status_code == 403
    assert "'clinician'" in refused.json()["detail"]
