"""Device clocks end to end: a sender whose clock is 5 minutes ahead of this host's sends HL7
over MLLP to `greenchannel serve`, whose host checks its clock against a local SNTP server set
1.5 s ahead (so true time is host + 1.5 s and the sender is 298.5 s ahead of it);
`greenchannel clocks` and `GET /api/clocks` show that offset and the status drifting, and a
clock alert reaches the websocket clients."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.devices.clock.sntp_server import sntp_server_thread
from tests.e2e.conftest import poll
from tests.net import mllp_exchange as send

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "adt-a02-transfer.hl7"
CST = timezone(timedelta(hours=8))
SKEW = timedelta(minutes=5)

pytestmark = pytest.mark.slow


def _skewed(raw: bytes, control_id: str, now: datetime) -> bytes:
    """The sample with the sender's clock 5 minutes fast in MSH-7 and a fresh MSH-10."""
    segments = raw.split(b"\r")
    msh = segments[0].split(b"|")
    msh[2] = b"CARDIO_MONITOR"  # MSH-3
    msh[3] = b"ED"  # MSH-4
    msh[6] = (now + SKEW).strftime("%Y%m%d%H%M%S%z").encode()  # MSH-7
    msh[9] = control_id.encode()  # MSH-10
    segments[0] = b"|".join(msh)
    return b"\r".join(segments)


def _source(report: dict[str, Any]) -> dict[str, Any] | None:
    return next((s for s in report["sources"] if s["source"] == "his-adt:CARDIO_MONITOR/ED"), None)


def test_a_sender_5_minutes_fast_shows_300_s_off_and_raises_a_clock_alert(
    server_factory, tmp_path: Path, database_url: str
) -> None:
    with sntp_server_thread(offset_s=1.5) as (ntp, ntp_port):
        server = server_factory(tmp_path, database_url)
        base_env = server.env

        def env() -> dict[str, str]:
            values = base_env()
            values |= {
                "GREENCHANNEL_CLOCKS__NTP_SERVER": "127.0.0.1",
                "GREENCHANNEL_CLOCKS__NTP_PORT": str(ntp_port),
                "GREENCHANNEL_CLOCKS__MIN_SAMPLES": "3",
                "GREENCHANNEL_CLOCKS__POLL_S": "0.2",
            }
            return values

        server.env = env  # type: ignore[method-assign]
        channel = (ROOT / "channels" / "device-clock-alerts.yaml").read_text(encoding="utf-8")
        (server.channels_dir / "device-clock-alerts.yaml").write_text(channel, encoding="utf-8")
        server.start()
        with server.http() as client:
            poll(lambda: client.get("/api/clocks").json(), lambda r: r["hosts"], "host NTP")
        with connect(
            f"ws://127.0.0.1:{server.http_port}/api/alerts/websocket",
            additional_headers={"Authorization": f"Bearer {server.token()}"},
        ) as socket:
            raw = SAMPLE.read_bytes()
            for n in range(4):
                message = _skewed(raw, f"CLK{n:04d}", datetime.now(CST))
                assert b"MSA|AA|" in send(server.mllp_port, message)
            alert = json.loads(socket.recv(timeout=30))

        assert alert["kind"] == "clock-alert" and alert["event"] == "raised"
        assert alert["source"]["id"] == "his-adt:CARDIO_MONITOR/ED"
        # 300 s against the host, less the host's 1.5 s; MSH-7 has whole seconds.
        assert 297.0 <= alert["offset_s"] <= 299.5
        assert re.search(r"is 29[789] s ahead of true time", alert["detail"])

        with server.http() as client:
            report = poll(
                lambda: client.get("/api/clocks").json(),
                lambda r: (s := _source(r)) is not None and s["samples"] == 4,
                "GET /api/clocks",
            )
        source = _source(report)
        assert source is not None
        assert source["status"] == "drifting"
        assert 297.0 <= source["offset_s"] <= 299.5
        host = report["hosts"][0]
        assert host["error"] is None and host["offset_s"] == pytest.approx(1.5, abs=0.1)
        assert ntp.requests >= 1

        shown = subprocess.run(
            [str(BIN / "greenchannel"), "--data-dir",
             str(server.data_dir), "clocks"],
            capture_output=True, text=True, env=server.env(), timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        columns = next(x for x in shown.stdout.splitlines() if "CARDIO_MONITOR" in x).split()
        assert columns[1] == "drifting" and 297.0 <= float(columns[2]) <= 299.5
        host_offset = re.search(r"NTP 127\.0\.0\.1:\d+: offset ([+-][\d.]+) s", shown.stdout)
        assert host_offset is not None and float(host_offset.group(1)) == pytest.approx(
            1.5, abs=0.1
        )
