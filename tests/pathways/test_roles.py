"""Who may use the pathway API, on a real `serve` with real tokens of each role (SQLite and
PostgreSQL): reads for clinicians, registry staff and admins; manual entries, corrections, facts
and stored scores for clinicians and admins; 403 naming the roles allowed for any other token."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine.auth import issue_token
from engine.testing import running_engine, settings_for_tests

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-for-role-tests"

READS = [
    ("GET", "/api/cases?center=chest_pain", None),
    ("GET", "/api/cases/none/timeline", None),
    ("GET", "/api/cases/none/clocks", None),
    ("GET", "/api/cases/none/archive", None),
    ("GET", "/api/qc/chest_pain?from=2026-01&to=2026-02", None),
    ("GET", "/api/alerts", None),
    ("GET", "/api/scores", None),
]
ENTRIES = [
    ("POST", "/api/cases", {"patient": "Patient/p1", "center": "chest_pain", "who": "王医生"}),
    ("POST", "/api/cases/none/nodes/door",
     {"time": "2026-11-25T08:30:00+08:00", "who": "王医生", "why": "补录"}),
    ("PUT", "/api/cases/none/facts/stemi", {"value": True, "who": "王医生"}),
    ("POST", "/api/scores/gcs", {"patient": "Patient/p1", "input": {"eye": 4}}),
]  # fmt: skip


async def test_each_role_gets_what_it_may_and_403_otherwise(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for_tests(tmp_path, database_url, channels={}, admin_token=ADMIN)
    async with running_engine(settings) as engine:
        now = datetime.now(UTC)
        tokens = {
            role: await issue_token(engine.database, f"{role}-1", role, now)
            for role in ("clinician", "registry-staff", "device", "interface-analyst")
        }
        tokens["admin"] = ADMIN
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{engine.http_port}", timeout=30
        ) as http:

            async def status(role: str, method: str, url: str, body: object) -> int:
                headers = {"Authorization": f"Bearer {tokens[role]}"}
                reply = await http.request(method, url, json=body, headers=headers)
                if reply.status_code == 403:
                    assert "clinician" in reply.json()["detail"], reply.text
                    assert f"this token's role is {role}" in reply.json()["detail"]
                return reply.status_code

            for role in ("clinician", "registry-staff", "admin"):
                for method, url, body in READS:
                    assert await status(role, method, url, body) in (200, 404), (role, url)
            for role in ("clinician", "admin"):
                for method, url, body in ENTRIES:
                    assert await status(role, method, url, body) not in (401, 403), (role, url)
            for method, url, body in ENTRIES:
                assert await status("registry-staff", method, url, body) == 403, url
            for role in ("device", "interface-analyst"):
                for method, url, body in READS + ENTRIES:
                    assert await status(role, method, url, body) == 403, (role, url)
            listed = await http.get(
                "/api/cases", headers={"Authorization": f"Bearer {tokens['registry-staff']}"}
            )
            assert listed.status_code == 200 and isinstance(listed.json(), list)
            anonymous = await http.get("/api/cases")
            assert anonymous.status_code == 401
