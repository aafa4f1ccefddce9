"""`greenchannel token issue|list|revoke` as a real subprocess on the engine's database (SQLite
and PostgreSQL), against a running `serve` on that database: an issued token works with its
role, `list` shows it without the secret, a revoked one is refused by the running engine."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from engine.auth import RELOAD_AFTER_S, TokenGate, issue_token
from engine.testing import running_engine, settings_for_tests, wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN = "admin-token-for-token-command"


def token(database_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENCHANNEL_")}
    env["GREENCHANNEL_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(BIN / "greenchannel"), "--data-dir", str(data_dir), "token", *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip


async def test_issue_list_revoke_against_a_running_engine(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for_tests(tmp_path, database_url, channels={}, admin_token=ADMIN)
    data_dir = tmp_path / "cli"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return token(database_url, data_dir, *args)

    async with running_engine(settings) as engine:
        issued = await asyncio.to_thread(cli, "issue", "--role", "clinician", "--name", "ed-1")
        again = await asyncio.to_thread(cli, "issue", "--role", "clinician", "--name", "ed-1")
        bad_role = await asyncio.to_thread(cli, "issue", "--role", "janitor", "--name", "x")
        listed = await asyncio.to_thread(cli, "list")
        secret = issued.stdout.strip()
        headers = {"Authorization": f"Bearer {secret}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{engine.http_port}", timeout=30
        ) as http:

            async def accepted() -> bool:
                return (await http.get("/api/cases", headers=headers)).status_code == 200

            await wait_until(accepted, timeout_s=RELOAD_AFTER_S + 10)
            analysts_only = await http.get("/api/clocks", headers=headers)
            revoked = await asyncio.to_thread(cli, "revoke", "ed-1")
            unknown = await asyncio.to_thread(cli, "revoke", "ed-1")

            async def refused() -> bool:
                return (await http.get("/api/cases", headers=headers)).status_code == 401

            await wait_until(refused, timeout_s=RELOAD_AFTER_S + 10)
        after = await asyncio.to_thread(cli, "list")

    assert issued.returncode == 0, issued.stderr
    assert len(secret) >= 40 and "\n" not in secret
    assert "shown only this once" in issued.stderr
    assert again.returncode == 1 and "exists already" in again.stderr
    assert bad_role.returncode == 2 and "janitor" in bad_role.stderr
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert rows == {"admin": "admin", "ed-1": "clinician"}  # the first start's admin token too
    assert secret not in listed.stdout
    assert analysts_only.status_code == 403
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert unknown.returncode == 1 and "no token named 'ed-1'" in unknown.stderr
    assert "ed-1" not in after.stdout


async def test_a_token_issued_on_a_running_engine_works_at_once(
    database_url: str, tmp_path: Path
) -> None:
    # An admin issues a token for the ED board and hands it over: no waiting for a reload.
    settings = settings_for_tests(tmp_path, database_url, channels={}, admin_token=ADMIN)
    async with running_engine(settings) as engine:
        gate = TokenGate(engine.database)
        await gate.load()
        secret = await issue_token(engine.database, "ed-board", "clinician", datetime.now(UTC))
        assert await gate.role_for(f"Bearer {secret}") == "clinician"
        assert await gate.role_for("Bearer not-a-token") is None
