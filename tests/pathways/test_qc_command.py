"""`greenchannel qc` as a real subprocess on a database filled through the FHIR store."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import statistics
import struct
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.cli import main
from fhir_store import FhirStore, migrate
from fhir_store.app import create_database
from tests.pathways.cases import CST, case, stemi_pci, write_case

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FEBRUARY = [3000, 4200, 5400, 5401, 6600]
MARCH = [2400, 3600, 4500]


async def _fill(url: str) -> None:
    database = create_database(url)
    await migrate(database)
    store = FhirStore(database)
    try:
        for month, values in ((2, FEBRUARY), (3, MARCH)):
            at = datetime(2026, month, 10, 9, tzinfo=CST)
            for number, seconds in enumerate(values):
                await write_case(
                    store, stemi_pci(f"{month}-{number}", seconds, at=at + timedelta(hours=number))
                )
        await write_case(store, stemi_pci("bad", -60, at=datetime(2026, 3, 20, tzinfo=CST)))
        stemi = {"diagnosis": "STEMI", "reperfusion": "primary_pci"}
        ward_at = datetime(2026, 3, 21, tzinfo=CST)
        ward = case("ward", arrival="in_hospital", facts=stemi, at=ward_at, first_medical_contact=0)
        await write_case(store, ward)
    finally:
        await store.aclose()
        await database.dispose()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qc") / "var"
    folder.mkdir()
    asyncio.run(_fill(f"sqlite+aiosqlite:///{folder / 'greenchannel.db'}"))
    return folder


def qc(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENCHANNEL_")}
    return subprocess.run(
        [str(BIN / "greenchannel"), "qc", "--data-dir", str(data_dir),
         "--center", "chest_pain", *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip


def test_json_gives_the_monthly_figures_of_the_stored_cases(data_dir: Path) -> None:
    run = qc(
        data_dir,
        "--from",
        "2026-02",
        "--to",
        "2026-03",
        "--standard",
        "cpc-recert",
        "--format",
        "json",
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert (data["center"], data["from"], data["to"]) == ("chest_pain", "2026-02", "2026-03")
    (report,) = data["reports"]
    d2w = next(i for i in report["indicators"] if i["id"] == "cpc.d2w")
    february, march = d2w["months"]
    assert february["n"] == 5 and february["mean_seconds"] == pytest.approx(
        statistics.fmean(FEBRUARY)
    )
    assert (february["met"], february["compliance"]) == (
        3,
        pytest.approx(0.6),
    )  # 5400 met, 5401 not
    assert march["n"] == 3 and march["median_seconds"] == pytest.approx(3600)
    assert (march["invalid"], march["excluded"], march["exclusions"]) == (
        1,
        1,
        {"in_hospital_onset": 1},
    )
    queue = {(e["kind"], e["case_id"], e["indicator"]) for e in report["data_quality"]}
    assert queue == {("invalid_interval", "bad", "cpc.d2w"), ("node_order", "bad", None)}


def test_csv_has_a_row_per_indicator_and_month(data_dir: Path) -> None:
    run = qc(
        data_dir,
        "--from",
        "2026-02",
        "--to",
        "2026-03",
        "--format",
        "csv",
        "--indicator",
        "cpc.d2w",
    )
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert {(r["standard"], r["indicator"], r["month"]) for r in rows} == {
        ("cpc-recert", "cpc.d2w", "2026-02"),
        ("cpc-recert", "cpc.d2w", "2026-03"),
        ("cpc-recert", "cpc.d2w", "all"),
    }
    february = next(r for r in rows if r["month"] == "2026-02")
    assert (february["n"], february["mean_min"], february["compliance"]) == ("5", "82.0033", "0.6")


def test_table_and_chart(data_dir: Path, tmp_path: Path) -> None:
    chart = tmp_path / "d2w.png"
    run = qc(data_dir, "--from", "2026-02", "--to", "2026-03", "--standard", "cpc-recert",
             "--indicator", "cpc.d2w", "--plot", str(chart))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "cpc.d2w  Door to wire (D2W)  (door -> wire_crossing, minutes)" in run.stdout
    february = next(line for line in run.stdout.splitlines() if line.strip().startswith("2026-02"))
    assert february.split()[:6] == ["2026-02", "5", "82.0", "90.0", "102.0", "60.0%"]
    assert "bad  cpc.d2w  door" in run.stdout  # the data-quality queue
    png = chart.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1200, 675) and len(png) > 20_000


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("--from", "2026-13"), 2, "'2026-13' is not a month"),
        (("--from", "2026-05", "--to", "2026-02"), 3, "ends (2026-02) before it starts (2026-05)"),
        (("--standard", "cpc-v9", "--to", "2026-03"), 3,
         "no standard 'cpc-v9' for chest_pain; there are: cpc-recert"),
        (("--indicator", "cpc.mortality", "--standard", "cpc-recert", "--to", "2026-03"), 3,
         "defines cpc.mortality"),
    ],
)  # fmt: skip
def test_bad_arguments_say_what_to_do(
    data_dir: Path, args: tuple[str, ...], code: int, words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # in process, as the CLI's own tests do: main() returns the exit code
    with pytest.raises(SystemExit) if code == 2 else contextlib.nullcontext() as exited:
        returned = main(["qc", "--data-dir", str(data_dir), "--center", "chest_pain", *args])
    assert (exited.value.code if code == 2 else returned) == code  # type: ignore[union-attr]
    assert words in capsys.readouterr().err


def test_a_missing_database_is_an_environment_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["qc", "--data-dir", str(tmp_path / "nowhere"), "--center", "stroke"]) == 3
    error = capsys.readouterr().err
    assert "no database at" in error and "--data-dir" in error
    assert not (tmp_path / "nowhere").exists()
