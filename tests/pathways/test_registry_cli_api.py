"""`greenchannel registry check|export` as real subprocesses, and `/api/registry/...` on a real
`greenchannel serve`, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fhir_store import FhirStore, migrate
from fhir_store.app import create_database
from pathways.registry import build_record
from tests.e2e.conftest import Server
from tests.pathways.archive_cases import stemi_by_120_with_primary_pci, write
from tests.pathways.registry_cases import complete_stemi
from tests.pathways.test_archive_cli_api import Cli, sqlite_file
from tests.pathways.test_registry_store import ARCHIVE_STEMI_MISSING


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Iterator[Cli]:
    async def load() -> None:
        database = create_database(database_url)
        await migrate(database)
        store = FhirStore(database)
        try:
            for case in (complete_stemi(), stemi_by_120_with_primary_pci()):
                await write(store, case)
        finally:
            await store.aclose()
            await database.dispose()

    asyncio.run(load())
    yield Cli(database_url, tmp_path)


def test_check_prints_each_case_and_exits_1_when_one_is_not_ready(cli: Cli) -> None:
    result = cli(
        "registry", "check", "--center", "chest_pain", "--month", "2024-03", "--hospital-id", "H1"
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    headlines = [line for line in lines if not line.startswith("  ")]
    assert headlines[1] == f"cp-stemi-1: {len(ARCHIVE_STEMI_MISSING)} problems"
    assert headlines[0].startswith("cp-reg-1: ")  # its staff entries are not stored
    first = lines[lines.index(headlines[1]) + 1]
    assert first.startswith("  ERROR FirstAIDInfo.CONSCIOUSNESS_TYPE: 急救信息:意识必填;  ← FHIR ")


def test_check_of_one_case_as_json(cli: Cli) -> None:
    result = cli("registry", "check", "--center", "chest_pain", "--case", "cp-stemi-1", "--json")
    assert result.returncode == 1, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["case_id"] == "cp-stemi-1" and report["ready"] is False
    keys = [m["field"] for m in report["missing"]]
    assert keys == ["RegisterInfo.HOSPITAL_ID", *ARCHIVE_STEMI_MISSING]  # no --hospital-id


def test_export_prints_the_record_the_builder_makes(cli: Cli, database_url: str) -> None:
    result = cli("registry", "export", "--registry", "cpc", "--case", "cp-reg-1")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)

    async def built() -> dict[str, Any]:
        database = create_database(database_url)
        store = FhirStore(database)
        try:
            return (await build_record(store, "cp-reg-1")).payload
        finally:
            await store.aclose()
            await database.dispose()

    assert printed == asyncio.run(built())
    assert printed["FirstAIDInfo"]["CW_120_ARRIVED_HOSPITAL_TIME"] == "2024-03-05T08:51:12"
    detail = json.loads(
        cli("registry", "export", "--registry", "cpc", "--case", "cp-reg-1", "--detail").stdout
    )
    assert detail["spec_version"].startswith("2.1")
    assert detail["sources"]["RegisterInfo.NAME"]["sources"] == ["Patient/p-reg-1"]
    assert detail["completeness"]["ready"] is False


def test_export_of_an_unknown_case_or_registry_fails_with_one_line(cli: Cli) -> None:
    result = cli("registry", "export", "--registry", "cpc", "--case", "nope")
    assert (result.returncode, result.stdout) == (1, "")
    assert "no center case EpisodeOfCare/nope" in result.stderr
    result = cli("registry", "export", "--registry", "nope", "--case", "cp-reg-1")
    assert result.returncode == 3
    assert "no registry mapping 'nope'" in result.stderr
    result = cli("registry", "export", "--registry", "wso", "--case", "cp-reg-1")
    assert result.returncode == 1
    assert "it is a chest_pain case, and the wso registry takes stroke cases" in result.stderr
    result = cli("registry", "check", "--center", "chest_pain", "--month", "2024-13")
    assert result.returncode == 1 and "not YYYY-MM" in result.stderr


@pytest.mark.slow
def test_the_registry_api_on_a_running_engine(database_url: str, tmp_path: Path) -> None:
    server = Server(tmp_path, None if sqlite_file(database_url) else database_url)
    server.start()
    try:
        with server.http() as http:
            for case in (complete_stemi(), stemi_by_120_with_primary_pci()):
                for resource in case.resources:  # as a FHIR client would write them
                    path = f"/fhir/{resource['resourceType']}/{resource['id']}"
                    reply = http.put(path, json=resource)
                    assert reply.status_code in (200, 201), reply.text
            reply = http.get("/api/registry/cpc/cases/cp-stemi-1/record")
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["ready"] is False
            assert body["record"]["payload"]["FirstAIDInfo"]["CW_COMING_WAY_CODE"] == "1"
            assert [p["field"] for p in body["problems"]][:2] == [
                "HOSPITAL_ID",
                "CONSCIOUSNESS_TYPE",
            ]
            assert body["problems"][1]["message"] == "急救信息:意识必填;"
            reply = http.get(
                "/api/registry/check", params={"center": "chest_pain", "month": "2024-03"}
            )
            assert reply.status_code == 200, reply.text
            checked = reply.json()
            assert [c["case_id"] for c in checked["cases"]] == ["cp-reg-1", "cp-stemi-1"]
            assert checked["ready"] == 0 and checked["registry"] == "cpc"
            for path, status in (
                ("/api/registry/cpc/cases/nope/record", 404),
                ("/api/registry/wso/cases/cp-reg-1/record", 404),  # a chest pain case
                ("/api/registry/nope/cases/cp-reg-1/record", 404),
                ("/api/registry/check?center=chest_pain&month=2024-13", 422),
                ("/api/registry/check?center=chest_pain", 400),
                ("/api/registry/check?center=nope&month=2024-03", 404),
            ):
                assert http.get(path).status_code == status, path
            anonymous = http.get(
                "/api/registry/check?center=chest_pain&month=2024-03",
                headers={"Authorization": "Bearer wrong"},
            )
            assert anonymous.status_code == 401
    finally:
        assert server.stop() == 0
