"""Wristbands on a real database (SQLite and PostgreSQL): bind, unbind, the board's statuses,
unbinding at discharge (an ADT A03 as the FHIR change it makes), and the CLI as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from devices.uwb import wristbands
from devices.uwb.errors import UnknownTag, WristbandError
from devices.uwb.positions import UwbProcessor
from devices.uwb.subscriber import UwbSubscriber
from devices.uwb.zones import ZoneMap
from fhir_store import FhirStore
from tests.devices.uwb.conftest import CST, pozyx
from tests.pathways import resources as r

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=CST)


def by_tag(rows: list[wristbands.BoardRow]) -> dict[str, tuple[str, str]]:
    return {row.tag_id: (row.status, row.where) for row in rows}


@pytest.mark.anyio
async def test_the_board_shows_in_use_idle_silent_and_overdue(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    for tag in ("T-1", "T-2", "T-3"):
        await store.update("Encounter", f"v-{tag}", r.ed_visit(f"v-{tag}", f"p-{tag}"))
        await wristbands.bind(database, tag, f"p-{tag}", f"v-{tag}", T0)
    await wristbands.register(database, "T-4", T0)
    processor = UwbProcessor(database, store, zones, CST)
    for second in range(0, 30, 2):
        await processor.handle(pozyx("T-1", T0 + timedelta(seconds=second), 5, 3))
    await processor.handle(pozyx("T-2", T0, 5, 10))
    await wristbands.unbind_encounter(database, "v-T-3", T0)  # discharged
    now = T0 + timedelta(seconds=60)
    board = by_tag(await wristbands.board(database, zones, now))
    assert board == {
        "T-1": ("in_use", "gate"),
        "T-2": ("in_use", "outside"),  # one fix in triage: not yet entered
        "T-3": ("idle", "unknown"),  # unbound at discharge, not yet due back
        "T-4": ("idle", "unknown"),
    }
    later = T0 + timedelta(hours=zones.return_within_h, minutes=1)
    board = by_tag(await wristbands.board(database, zones, later))
    assert board["T-1"] == ("silent", "unknown")  # bound and quiet: where is unknown
    assert board["T-3"][0] == "overdue"
    await wristbands.return_tag(database, "T-3", later)
    assert by_tag(await wristbands.board(database, zones, later))["T-3"][0] == "idle"


@pytest.mark.anyio
async def test_binding_twice_unbinding_unbound_and_unknown_tags_are_refused(
    database: AsyncEngine,
) -> None:
    await wristbands.bind(database, "T-1", "p1", "v1", T0)
    with pytest.raises(WristbandError, match="bound to encounter v1 since"):
        await wristbands.bind(database, "T-1", "p2", "v2", T0)
    assert await wristbands.unbind(database, "T-1", T0) == "v1"
    with pytest.raises(WristbandError, match="not bound to anyone"):
        await wristbands.unbind(database, "T-1", T0)
    with pytest.raises(UnknownTag):
        await wristbands.unbind(database, "nope", T0)
    await wristbands.register(database, "B-1", T0, kind="badge", practitioner_id="dr-wang")
    with pytest.raises(WristbandError, match="staff badge"):
        await wristbands.bind(database, "B-1", "p1", "v1", T0)
    await wristbands.bind(database, "T-1", "p2", "v2", T0)  # back in the pool, bound again


@pytest.mark.anyio
async def test_a_discharge_unbinds_the_encounters_wristband_at_the_discharge_time(
    database: AsyncEngine, store: FhirStore, zones: ZoneMap
) -> None:
    subscriber = UwbSubscriber(database, name="uwb-encounters", zones=zones, timezone=CST)
    try:
        await subscriber.catch_up()  # starts at now
        await store.update("Encounter", "v1", r.ed_visit())
        await wristbands.bind(database, "T-1", "p1", "v1", T0)
        await subscriber.catch_up()
        assert (await wristbands.open_binding(database, "T-1")) is not None
        discharged = r.ed_visit(status="finished",
                                period={"start": "2026-11-25T08:28:00+08:00",
                                        "end": "2026-11-25T11:40:00+08:00"})  # fmt: skip
        await store.update("Encounter", "v1", discharged)  # what ADT A03 maps to
        await subscriber.catch_up()
        await subscriber.catch_up()  # a replay finds nothing left
    finally:
        await subscriber.aclose()
    assert await wristbands.open_binding(database, "T-1") is None
    (row,) = await wristbands.board(database, zones, T0 + timedelta(hours=4))
    assert row.status == "idle"
    assert row.due_back_at == datetime(2026, 11, 26, 11, 40, tzinfo=CST)


def greenchannel(database_url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENCHANNEL_")}
    prefix = "sqlite+aiosqlite:///"
    if database_url.startswith(prefix):
        data_dir = Path(database_url.removeprefix(prefix)).parent
    else:
        data_dir = tmp / "var"
        env["GREENCHANNEL_DATABASE_URL"] = database_url
    return subprocess.run(
        [str(BIN / "greenchannel"), "--data-dir", str(data_dir), "wristband", *args],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip


def test_the_cli_binds_shows_the_board_and_unbinds(database_url: str, tmp_path: Path) -> None:
    done = greenchannel(database_url, tmp_path, "bind", "T-42", "--patient", "p1",
                        "--encounter", "v1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "T-42 bound to patient p1, encounter v1" in done.stdout
    again = greenchannel(database_url, tmp_path, "bind", "T-42", "--patient", "p2",
                         "--encounter", "v2")  # fmt: skip
    assert again.returncode == 1
    assert "tag T-42 is bound to encounter v1" in again.stderr
    board = greenchannel(database_url, tmp_path, "board")
    assert board.returncode == 0, board.stderr
    (row,) = [line.split() for line in board.stdout.splitlines() if line.startswith("T-42")]
    assert row[:5] == ["T-42", "wristband", "silent", "unknown", "v1"]  # never heard
    badge = greenchannel(database_url, tmp_path, "register", "B-7", "--badge", "dr-li")
    assert badge.returncode == 0, badge.stderr
    off = greenchannel(database_url, tmp_path, "unbind", "T-42")
    assert (off.returncode, off.stdout.strip()) == (0, "T-42 unbound from encounter v1")
    listed = greenchannel(database_url, tmp_path, "board", "--json", "--status", "idle")
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(row["tag_id"], row["kind"]) for row in rows] == [
        ("B-7", "badge"),
        ("T-42", "wristband"),
    ]
    assert rows[0]["practitioner_id"] == "dr-li"
    unknown = greenchannel(database_url, tmp_path, "unbind", "T-999")
    assert unknown.returncode == 1 and "tag T-999 is not registered" in unknown.stderr
