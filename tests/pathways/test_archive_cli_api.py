"""`greenchannel case show` as a real subprocess, and `GET /api/cases/{id}/archive` on a real
`greenchannel serve`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database
from pathways.archive import build_archive
from tests.e2e.conftest import Server
from tests.pathways.archive_cases import (
    few_data_case,
    stemi_by_120_with_primary_pci,
    stroke_with_lysis,
    write,
)

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def sqlite_file(database_url: str) -> Path | None:
    prefix = "sqlite+aiosqlite:///"
    return Path(database_url.removeprefix(prefix)) if database_url.startswith(prefix) else None


class Cli:
    """`greenchannel` run as a process on the test database (the data dir's SQLite file, or
    GREENCHANNEL_DATABASE_URL for PostgreSQL)."""

    def __init__(self, database_url: str, tmp: Path) -> None:
        file = sqlite_file(database_url)
        self.data_dir = file.parent if file else tmp / "var"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GREENCHANNEL_")}
        if file is None:
            self.env["GREENCHANNEL_DATABASE_URL"] = database_url

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "greenchannel"), "--data-dir", str(self.data_dir), *args],
            capture_output=True, text=True, env=self.env, timeout=120, cwd=ROOT,
        )  # fmt: skip


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    import asyncio

    async def load() -> None:
        database = create_database(database_url)
        await migrate(database)
        store = FhirStore(database)
        try:
            for case in (stemi_by_120_with_primary_pci(), stroke_with_lysis(), few_data_case()):
                await write(store, case)
        finally:
            await store.aclose()
            await database.dispose()

    asyncio.run(load())
    yield Cli(database_url, tmp_path)


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def column_starts(line: str) -> list[int]:
    """Display columns where each cell of a table row starts (cells are split by 2+ spaces)."""
    return [width(line[: m.start()]) for m in re.finditer(r"(?<=  )\S", line)]


def test_case_show_prints_sections_and_an_aligned_timeline(cli: Cli) -> None:
    result = cli("case", "show", "cp-stemi-1")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for title in ("急救信息 Emergency", "诊断 Diagnosis", "治疗 Treatment", "转归 Outcome",
                  "时间轴 Timeline", "评分 Scores", "缺项 Missing"):  # fmt: skip
        assert f"== {title} ==" in out
    assert "来院方式 Arrival: 呼叫120 (ems)" in out
    assert "急性下壁ST段抬高型心肌梗死" in out
    lines = out.splitlines()
    start = lines.index("== 时间轴 Timeline ==") + 1
    end = lines.index("== 评分 Scores ==")
    rows = [line for line in lines[start:end] if line.startswith(("  2024-", "  时间 time"))]
    assert len(rows) == 1 + len(stemi_by_120_with_primary_pci().nodes)
    assert len({tuple(column_starts(row)[:5]) for row in rows}) == 1, "columns do not line up"
    wire = next(row for row in rows if "wire_crossing" in row)
    # 导丝通过: 22:15 after the puncture, 40:08 after the door, 1:15:50 after FMC
    assert re.search(r"导丝通过 wire_crossing\s+22:15\s+40:08\s+1:15:50\s+1:51:20\s+manual", wire)
    assert "other source hl7v2: 2024-03-05T08:55:03+08:00 (03:51 from the node)" in out


def test_case_show_json_is_the_archive(cli: Cli, database_url: str) -> None:
    import asyncio

    result = cli("case", "show", "st-lysis-1", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)

    async def built() -> dict[str, object]:
        database = create_database(database_url)
        store = FhirStore(database)
        try:
            return await build_archive(store, "st-lysis-1")
        finally:
            await store.aclose()
            await database.dispose()

    expected = asyncio.run(built())
    printed.pop("generated_at")
    expected.pop("generated_at")
    assert printed == expected
    assert printed["timeline"]["nodes"][-2]["key"] == "lytic_start"


def test_case_show_of_a_case_with_few_data_says_what_is_missing(cli: Cli) -> None:
    result = cli("case", "show", "cp-new")
    assert result.returncode == 0, result.stderr
    missing = result.stdout.split("== 缺项 Missing ==")[1]
    assert "timeline.door: 到达本院大门: no authoritative time node" in missing
    assert "arrival_mode:" in missing


def test_case_show_of_an_unknown_case_exits_1_with_one_line(cli: Cli) -> None:
    result = cli("case", "show", "no-such-case")
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert "no center case EpisodeOfCare/no-such-case" in line


def test_case_show_without_a_database_exits_3(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENCHANNEL_")}
    result = subprocess.run(
        [str(BIN / "greenchannel"), "--data-dir", str(tmp_path / "nowhere"), "case", "show", "x"],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 3
    assert "no database at" in result.stderr
    assert not (tmp_path / "nowhere" / "greenchannel.db").exists()


@pytest.mark.slow
def test_the_archive_api_on_a_running_engine(database_url: str, tmp_path: Path) -> None:
    server = Server(tmp_path, None if sqlite_file(database_url) else database_url)
    server.start()
    try:
        with server.http() as http:
            case = stemi_by_120_with_primary_pci()
            for resource in case.resources:  # as a FHIR client would write them
                path = f"/fhir/{resource['resourceType']}/{resource['id']}"
                reply = http.put(path, json=resource)
                assert reply.status_code in (200, 201), reply.text
            reply = http.get("/api/cases/cp-stemi-1/archive")
            assert reply.status_code == 200, reply.text
            archive = reply.json()
            assert [n["key"] for n in archive["timeline"]["nodes"]] == [
                key for key, _ in sorted(case.nodes.items(), key=lambda item: item[1])
            ]
            assert archive["emergency"]["arrival_mode"] == "ems"
            assert archive["outcome"]["disposition"]["code"] == "home"
            unknown = http.get("/api/cases/no-such-case/archive")
            assert unknown.status_code == 404
            assert "no center case" in unknown.json()["detail"]
            anonymous = http.get(
                "/api/cases/cp-stemi-1/archive", headers={"Authorization": "Bearer wrong"}
            )
            assert anonymous.status_code == 401
    finally:
        assert server.stop() == 0
