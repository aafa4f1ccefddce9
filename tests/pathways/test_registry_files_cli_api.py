"""The file-template exports end to end: `greenchannel registry export --format csv|xlsx` and
`registry check --center stroke|trauma` as real subprocesses, and
`GET /api/registry/{registry}/export` on a running engine with real tokens of each role (registry
staff and admins only), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from openpyxl import load_workbook

from engine.auth import issue_token
from engine.testing import running_engine, settings_for_tests
from fhir_store import FhirStore, migrate
from fhir_store.app import create_database
from tests.e2e.scenario_replay import eventually, subscribers_caught_up
from tests.pathways.archive_cases import stroke_with_lysis, write
from tests.pathways.registry_file_cases import complete_stroke, complete_trauma
from tests.pathways.test_archive_cli_api import Cli
from tests.pathways.test_registry_files import (
    STROKE_ROW,
    TRAUMA_ROW,
    WSO_KEYS,
    read_csv,
    read_xlsx,
)

ADMIN = "admin-token-for-registry-file-tests"


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    async def load() -> None:
        database = create_database(database_url)
        await migrate(database)
        store = FhirStore(database)
        try:
            for case in (complete_stroke(), stroke_with_lysis(), complete_trauma()):
                await write(store, case)
        finally:
            await store.aclose()
            await database.dispose()

    asyncio.run(load())
    yield Cli(database_url, tmp_path)


def test_export_writes_a_months_xlsx(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "wso.xlsx"
    result = cli("registry", "export", "--registry", "wso", "--month", "2026-10",
                 "--format", "xlsx", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"wso 2026.11-1: 1 cases written to {out} (0 skipped, 0 flagged)"
    )
    header, row = read_xlsx(out.read_bytes(), "WSO指标数据")
    assert header[:2] == ["患者编号", "卒中时年龄"]
    assert dict(zip(WSO_KEYS, row, strict=True)) == STROKE_ROW


def test_an_incomplete_case_is_left_out_and_reported(cli: Cli, tmp_path: Path) -> None:
    result = cli("registry", "export", "--registry", "wso", "--month", "2024-06",
                 "--format", "csv", "--out", "-")  # fmt: skip
    assert result.returncode == 1
    assert result.stdout.startswith("\ufeff患者编号,卒中时年龄,")  # the header row only
    assert len(result.stdout.strip().splitlines()) == 1
    report = result.stderr.splitlines()
    assert report[0] == "wso 2026.11-1: 0 cases written to stdout (1 skipped, 0 flagged)"
    assert report[1] == "st-lysis-1: skipped, 4 problems"
    assert report[2].startswith("  ERROR WSO.thrombolysis_drug: WSO指标:溶栓药物必填;  ← FHIR ")
    out = tmp_path / "flagged.csv"
    result = cli("registry", "export", "--registry", "wso", "--case", "st-lysis-1",
                 "--format", "csv", "--incomplete", "flag", "--out", str(out))  # fmt: skip
    assert result.returncode == 1
    assert "1 cases written" in result.stdout and "st-lysis-1: flagged, 4 problems" in result.stdout
    header, row = read_csv(out.read_bytes())
    assert row[0] == "st-lysis-1" and row[WSO_KEYS.index("thrombolysis_done")] == "YES"


def test_a_trauma_case_exports_with_the_hospital_code(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "trauma.csv"
    result = cli("registry", "export", "--registry", "trauma-regional", "--case", "tr-reg-1",
                 "--format", "csv", "--out", str(out), "--hospital-id", "H-TRAUMA-01")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    header, row = read_csv(out.read_bytes())
    assert row[:3] == ["H-TRAUMA-01", "tr-reg-1", "陈丽"]
    assert len(row) == len(TRAUMA_ROW)


def test_check_knows_the_stroke_and_trauma_registries(cli: Cli) -> None:
    result = cli("registry", "check", "--center", "stroke", "--month", "2026-10")
    assert (result.returncode, result.stdout) == (0, "st-wso-1: ready\n"), result.stderr
    result = cli("registry", "check", "--center", "stroke", "--month", "2024-06")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "st-lysis-1: 4 problems"
    result = cli("registry", "check", "--center", "trauma", "--case", "tr-reg-1")
    assert result.returncode == 1
    assert "ERROR Trauma.HOSPITAL_ID: 创伤数据:医院编码必填;" in result.stdout
    result = cli("registry", "check", "--center", "trauma", "--case", "tr-reg-1",
                 "--hospital-id", "H-TRAUMA-01")  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "tr-reg-1: ready\n"), result.stdout


def test_wrong_export_requests_say_what_to_do(cli: Cli) -> None:
    result = cli("registry", "export", "--registry", "cpc", "--month", "2026-10", "--format", "csv")
    assert result.returncode == 1
    assert "the cpc registry takes records by its API, not a file template" in result.stderr
    result = cli("registry", "export", "--registry", "wso", "--month", "2026-10")
    assert result.returncode == 1 and "give --case ID" in result.stderr
    result = cli("registry", "export", "--registry", "wso", "--case", "nope", "--format", "csv")
    assert result.returncode == 1 and "no center case EpisodeOfCare/nope" in result.stderr


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_export_route_is_for_registry_staff(database_url: str, tmp_path: Path) -> None:
    settings = settings_for_tests(tmp_path, database_url, channels={}, admin_token=ADMIN)
    async with running_engine(settings) as engine:
        store = FhirStore(engine.database)
        try:
            for case in (complete_stroke(), stroke_with_lysis(), complete_trauma()):
                await write(store, case)
        finally:
            await store.aclose()
        # The pathway engine re-derives the written cases: export what it settles on.
        caught_up = subscribers_caught_up(database_url)
        await asyncio.to_thread(eventually, caught_up, "change subscribers caught up", 60)
        now = datetime.now(UTC)
        tokens = {
            role: await issue_token(engine.database, f"{role}-1", role, now)
            for role in ("registry-staff", "clinician", "device")
        }
        tokens["admin"] = ADMIN
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{engine.http_port}", timeout=60
        ) as http:

            def auth(role: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {tokens[role]}"}

            reply = await http.get(
                "/api/registry/wso/export", params={"month": "2026-10", "format": "xlsx"},
                headers=auth("registry-staff"),
            )  # fmt: skip
            assert reply.status_code == 200, reply.text
            assert reply.headers["content-disposition"] == (
                'attachment; filename="wso-indicators-2026-10.xlsx"'
            )
            assert reply.headers["content-type"].startswith("application/vnd.openxmlformats")
            assert reply.headers["x-registry-exported"] == "st-wso-1"
            book = load_workbook(io.BytesIO(reply.content))
            row = [cell.value for cell in book["WSO指标数据"][2]]
            assert dict(zip(WSO_KEYS, row, strict=True)) == STROKE_ROW
            reply = await http.get(
                "/api/registry/wso/export",
                params={"month": "2024-06", "format": "csv", "incomplete": "flag"},
                headers=auth("admin"),
            )
            assert reply.status_code == 200, reply.text
            assert reply.headers["x-registry-flagged"] == "st-lysis-1"
            assert reply.headers["x-registry-skipped"] == ""
            assert read_csv(reply.content)[1][0] == "st-lysis-1"
            reply = await http.get(
                "/api/registry/trauma-regional/export",
                params={"case": "tr-reg-1", "format": "csv", "hospital_id": "H-TRAUMA-01"},
                headers=auth("registry-staff"),
            )
            assert reply.status_code == 200 and reply.headers["x-registry-exported"] == "tr-reg-1"
            for path, status in (
                ("/api/registry/cpc/export?month=2026-10", 400),
                ("/api/registry/wso/export?month=2026-10&format=pdf", 422),
                ("/api/registry/wso/export?format=csv", 400),
                ("/api/registry/wso/export?case=nope", 404),
                ("/api/registry/nope/export?month=2026-10", 404),
            ):
                reply = await http.get(path, headers=auth("registry-staff"))
                assert reply.status_code == status, (path, reply.text)
            check = await http.get(
                "/api/registry/check", params={"center": "stroke", "month": "2026-10"},
                headers=auth("registry-staff"),
            )  # fmt: skip
            assert check.status_code == 200 and check.json()["registry"] == "wso"
            assert check.json()["ready"] == 1
            for role in ("clinician", "device"):
                for path in (
                    "/api/registry/wso/export?month=2026-10",
                    "/api/registry/check?center=stroke&month=2026-10",
                    "/api/registry/wso/cases/st-wso-1/record",
                ):
                    reply = await http.get(path, headers=auth(role))
                    assert reply.status_code == 403, (role, path)
                    assert reply.json()["detail"] == (
                        "this needs a token with the role registry-staff, admin; "
                        f"this token's role is {role}"
                    )
            anonymous = await http.get("/api/registry/wso/export?month=2026-10")
            assert anonymous.status_code == 401
