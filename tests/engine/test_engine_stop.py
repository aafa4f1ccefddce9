"""What a stopped engine leaves behind on a database server: nothing. The engine serves HTTP
with uvicorn's lifespan off (it orders its stop itself), so it runs the routers' lifespans
around everything; each closes the FHIR store its router built."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from engine.testing import running_engine, settings_for_tests
from tests.postgres import sessions_left

pytestmark = pytest.mark.anyio
TOKEN = "admin-token-for-the-stop-test"


async def test_a_stopped_engine_leaves_no_connection_open(
    database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a SQLite connection holds nothing on a server")
    settings = settings_for_tests(tmp_path, database_url, channels={}, admin_token=TOKEN)
    async with running_engine(settings) as engine:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{engine.http_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        ) as http:
            # Each is served by a router that built a FHIR store of its own.
            for path in ("/fhir/Patient?name=nobody", "/api/cases"):
                reply = await http.get(path)
                assert reply.status_code == 200, (path, reply.text)

    assert sessions_left(database_url) == 0
