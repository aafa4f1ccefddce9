"""The README's tour, end to end: `greenchannel serve` fed by python-hl7's `mllp_send`, the FHIR
store searched over HTTP, the journal read through the CLI."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
MLLP_SEND = Path(sys.executable).parent / "mllp_send"
SAMPLE = ROOT / "mappings" / "tests" / "samples" / "adt-a04.hl7"

pytestmark = pytest.mark.slow


def mllp_send(port: int, path: Path) -> str:
    """python-hl7's `mllp_send` reads MLLP-framed files: frame the plain sample first."""
    with tempfile.TemporaryDirectory() as folder:
        framed = Path(folder) / "message.hl7"
        framed.write_bytes(b"\x0b" + path.read_bytes() + b"\x1c\r")
        result = subprocess.run(
            [str(MLLP_SEND), "--port", str(port), "--file", str(framed), "127.0.0.1"],
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    return result.stdout.decode("utf-8")


def wait_for_patient(client: httpx.Client, identifier: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bundle = client.get("/fhir/Patient", params={"identifier": identifier}).json()
        if bundle.get("entry"):
            return bundle
        time.sleep(0.1)
    raise AssertionError(f"no Patient with identifier {identifier} after 30 s")


def journal_statuses(client: httpx.Client, expected: list[str]) -> list[str]:
    """The journal's statuses, newest first, once they equal `expected` (or after 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        statuses = [m["status"] for m in client.get("/api/messages").json()["messages"]]
        if statuses == expected or time.monotonic() > deadline:
            return statuses
        time.sleep(0.1)


def test_adt_from_mllp_send_is_acked_and_the_patient_is_searchable(
    server_factory, tmp_path: Path, database_url: str
) -> None:
    server = server_factory(tmp_path, database_url)
    server.start()
    output = mllp_send(server.mllp_port, SAMPLE)
    assert "MSA|AA|MSG00001" in output
    with server.http() as client:
        bundle = wait_for_patient(client, "10086")
        patient = bundle["entry"][0]["resource"]
        assert patient["name"][0]["text"] == "张三"
        assert patient["birthDate"] == "1958-03-12"
        encounters = client.get("/fhir/Encounter", params={"identifier": "V20261125001"}).json()
        encounter = encounters["entry"][0]["resource"]
        assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"
        assert encounter["period"]["start"] == "2026-11-25T08:28:00+08:00"

    listed = server.cli("messages", "list")
    assert listed.returncode == 0 and "his-adt" in listed.stdout and "MSG00001" in listed.stdout
    message_id = listed.stdout.splitlines()[1].split()[0]
    shown = server.cli("messages", "show", message_id)
    assert shown.returncode == 0
    assert "PID|1||10086" in shown.stdout and "fhir-store: sent" in shown.stdout


def test_resent_message_is_acked_and_applied_once(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    assert "MSA|AA|MSG00001" in mllp_send(server.mllp_port, SAMPLE)
    with server.http() as client:
        first = wait_for_patient(client, "10086")["entry"][0]["resource"]
        assert "MSA|AA|MSG00001" in mllp_send(server.mllp_port, SAMPLE)
        time.sleep(1.0)
        again = client.get("/fhir/Patient", params={"identifier": "10086"}).json()
        assert len(again["entry"]) == 1
        assert again["entry"][0]["resource"]["meta"]["versionId"] == first["meta"]["versionId"]
        messages = client.get("/api/messages").json()["messages"]
        assert len(messages) == 1


def test_garbage_gets_a_nak_and_is_kept_as_error(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    garbage = tmp_path / "garbage.hl7"
    garbage.write_bytes(b"this is not HL7 at all\r")
    output = mllp_send(server.mllp_port, garbage)
    assert "MSA|AR" in output and "ERR|" in output
    with server.http() as client:
        messages = client.get("/api/messages", params={"status": "error"}).json()["messages"]
        assert len(messages) == 1
        detail = client.get(f"/api/messages/{messages[0]['id']}").json()
        assert detail["raw"]["text"].startswith("this is not HL7")
    # The listener is unharmed: the next good message is accepted.
    assert "MSA|AA|MSG00001" in mllp_send(server.mllp_port, SAMPLE)


def test_every_http_endpoint_needs_the_token(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    token_file = server.data_dir / "admin.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    for path in ("/api/stats", "/metrics", "/api/messages", "/fhir/Patient", "/api/channels"):
        response = httpx.get(server.url + path)
        assert response.status_code == 401, path
        wrong = httpx.get(server.url + path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, path
    with server.http() as client:
        assert client.get("/metrics").status_code == 200


def test_stats_and_metrics_count_messages(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    mllp_send(server.mllp_port, SAMPLE)
    with server.http() as client:
        wait_for_patient(client, "10086")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = client.get("/api/stats").json()["channels"]["his-adt"]
            if stats["destinations"].get("fhir-store", {}).get("since_start", {}).get("sent"):
                break
            time.sleep(0.1)
        assert stats["since_start"]["received"] == 1
        assert stats["destinations"]["fhir-store"]["since_start"]["sent"] == 1
        metrics = client.get("/metrics").text
        assert 'greenchannel_messages_total{channel="his-adt",event="received"} 1' in metrics
        assert "greenchannel_delivery_seconds_count" in metrics
        # the pathways' alert scheduler says how many cases it has still to look at
        assert re.search(
            r'^greenchannel_subscriber_pending\{subscriber="pathways"\} \d+$', metrics, re.M
        )
    result = server.cli("stats")
    assert result.returncode == 0 and "his-adt" in result.stdout


def test_reprocess_from_the_cli_runs_the_raw_message_again(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    mllp_send(server.mllp_port, SAMPLE)
    with server.http() as client:
        wait_for_patient(client, "10086")
    result = server.cli("messages", "reprocess", "--channel", "his-adt")
    assert result.returncode == 0, result.stderr
    assert "reprocessed 1 of 1" in result.stdout
    with server.http() as client:
        assert journal_statuses(client, ["sent", "sent"]) == ["sent", "sent"]
        assert len(client.get("/fhir/Patient", params={"identifier": "10086"}).json()["entry"]) == 1


def test_channels_undeploy_and_deploy_from_the_cli(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    assert server.cli("channels", "undeploy", "his-adt").returncode == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.mllp_port), 2):
        pass
    deployed = server.cli("channels", "deploy", "his-adt")
    assert deployed.returncode == 0, deployed.stderr
    assert "MSA|AA" in mllp_send(server.mllp_port, SAMPLE)
    listing = server.cli("channels", "list")
    assert "his-adt" in listing.stdout and "yes" in listing.stdout


def test_sigterm_stops_the_engine_cleanly(server_factory, tmp_path: Path) -> None:
    """SIGUSR1 writes every thread's stack to the log and the engine goes on serving; SIGTERM
    stops it with exit 0, each stage of the stop logged in order."""
    server = server_factory(tmp_path, None)
    server.start()
    assert server.process is not None
    server.process.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while "Current thread" not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    dump = server.log.read_text()
    assert "Current thread" in dump and 'File "' in dump  # the stacks, with their frames
    with server.http() as client:
        assert client.get("/api/health").status_code == 200

    assert server.stop() == 0
    events = [
        json.loads(line)["event"]
        for line in server.log.read_text().splitlines()
        if line.startswith("{") and '"engine.stop' in line
    ]
    assert events == [
        "engine.stopping",
        "engine.stopping.subscribers_stopped",
        "engine.stopping.channels_undeployed",
        "engine.stopping.http_closed",
        "engine.stopped",
    ]


def test_a_port_in_use_exits_3_with_a_clear_message(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", server.mllp_port))
        blocker.listen(1)
        result = subprocess.run(
            [str(Path(sys.executable).parent / "greenchannel"), "serve", "--data-dir",
             str(server.data_dir), "--http-port", str(server.http_port)],
            env=server.env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 3
    assert f"127.0.0.1:{server.mllp_port}" in result.stderr


def test_an_invalid_channel_file_refuses_the_start(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    path = server.channels_dir / "his-adt.yaml"
    path.write_text(path.read_text().replace("max_attempts: 0", "max_attempts: -2"))
    result = subprocess.run(
        [str(Path(sys.executable).parent / "greenchannel"), "serve", "--data-dir",
         str(server.data_dir), "--http-port", str(server.http_port)],
        env=server.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 3
    assert "his-adt.yaml:" in result.stderr and "max_attempts" in result.stderr


def test_redeploy_keeps_an_open_mllp_connection(server_factory, tmp_path: Path) -> None:
    import asyncio

    import hl7.mllp

    server = server_factory(tmp_path, None)
    server.start()
    first = SAMPLE.read_text(encoding="utf-8")
    second = first.replace("MSG00001", "MSG00002")

    async def conversation() -> list[str]:
        reader, writer = await hl7.mllp.open_hl7_connection(
            "127.0.0.1", server.mllp_port, encoding="utf-8"
        )
        codes = []
        try:
            writer.writemessage(first)
            await writer.drain()
            codes.append(str((await reader.readmessage()).segment("MSA")[1]))
            # The analyst changes the channel (a destination's retry policy) and redeploys it
            # while the HIS keeps its connection open.
            path = server.channels_dir / "his-adt.yaml"
            path.write_text(path.read_text().replace("max_backoff_s: 60", "max_backoff_s: 30"))
            result = await asyncio.to_thread(server.cli, "channels", "deploy", "his-adt")
            assert result.returncode == 0, result.stderr
            writer.writemessage(second)
            await writer.drain()
            codes.append(str((await reader.readmessage()).segment("MSA")[1]))
        finally:
            writer.close()
        return codes

    assert asyncio.run(conversation()) == ["AA", "AA"]
    with server.http() as client:
        assert journal_statuses(client, ["sent", "sent"]) == ["sent", "sent"]


def test_cli_errors_are_one_clear_line_and_a_nonzero_exit(server_factory, tmp_path: Path) -> None:
    server = server_factory(tmp_path, None)
    server.start()
    missing = server.cli("messages", "show", "999")
    assert missing.returncode == 1
    assert "message 999 is not in the journal" in missing.stderr
    unknown = server.cli("channels", "deploy", "no-such-channel")
    assert unknown.returncode == 1 and "no channel named 'no-such-channel'" in unknown.stderr
    naive = server.cli("messages", "list", "--since", "2026-11-25T08:00")
    assert naive.returncode == 2 and "has no offset" in naive.stderr
    server.stop()
    down = server.cli("stats")
    assert down.returncode == 3 and "cannot reach the engine" in down.stderr


def test_a_fresh_data_dir_deploys_every_shipped_channel(server_factory, tmp_path: Path) -> None:
    # What `make run` does on a new install: every shipped channel must deploy (an ECG drop
    # folder missing from a new data dir once stopped the whole engine at start).
    server = server_factory(tmp_path, None)
    shipped = sorted(p.stem for p in (ROOT / "channels").glob("*.yaml"))
    for name in shipped:
        text = (ROOT / "channels" / f"{name}.yaml").read_text(encoding="utf-8")
        if "kind: mqtt" in text:  # a client of the broker on 1883, not a listener
            (server.channels_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
        elif name != "his-adt":
            server.add_channel(name)  # its listener, if any, on a free port
    server.start()
    with server.http() as client:
        listed = client.get("/api/channels").json()
    assert listed["problems"] == []
    assert {c["name"]: c["deployed"] for c in listed["channels"]} == {n: True for n in shipped}
