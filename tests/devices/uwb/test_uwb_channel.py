"""UWB channels end to end on a real `greenchannel serve` (SQLite and PostgreSQL): Pozyx
positions published to the real Mosquitto on 127.0.0.1:1883, a Sewio feed from a local
WebSocket server speaking RTLS Studio's subscribe protocol, and Sewio messages POSTed over
HTTP; each ends as the wristband's Encounter location history and the chest pain door node
from UWB. Bad payloads and unknown tags end in the journal as ERROR with the reason."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.devices.uwb.conftest import CST, pozyx, sewio
from tests.e2e.conftest import Server
from tests.net import free_port
from tests.pathways import resources as r

pytestmark = pytest.mark.slow

MOSQUITTO = ("127.0.0.1", 1883)
ARRIVED = datetime(2026, 11, 25, 8, 21, 30, tzinfo=CST)
GATE, ED = (5.0, 3.0), (5.0, 10.0)
RETRY = "retry: {initial_backoff_s: 0.2, max_backoff_s: 1, max_attempts: 0}"


def channel(name: str, source: str) -> str:
    return (f"name: {name}\nsource:\n{source}\ndestinations:\n  - name: zones\n"
            f"    connector: {{kind: uwb-zones}}\n    {RETRY}\n")  # fmt: skip


def wait_for(check: Callable[[], Any], timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError("not within the time")


def walk(message: Callable[..., bytes], tag: str) -> list[bytes]:
    """30 s at the gate, then 30 s in triage, one fix every 2 s."""
    return [message(tag, ARRIVED + timedelta(seconds=s), *(GATE if s < 30 else ED))
            for s in range(0, 60, 2)]  # fmt: skip


def start(server: Server, http: httpx.Client) -> None:
    """A chest pain walk-in registered by the HIS, and wristband T-42 bound to the visit."""
    reason = [{"coding": [{"system": r.SNOMED, "code": "29857009"}]}]
    for resource in (r.patient(), r.ed_visit(reasonCode=reason)):
        reply = http.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
        assert reply.status_code in (200, 201), reply.text
    bound = http.post("/api/wristbands/T-42/bind", json={"patient": "p1", "encounter": "v1"})
    assert bound.status_code == 201, bound.text


def check_uwb_reached_the_case(http: httpx.Client) -> None:
    def stays() -> list[tuple[str, str]]:
        encounter = http.get("/fhir/Encounter/v1").json()
        return [(e["location"]["identifier"]["value"], e["period"]["start"])
                for e in encounter.get("location", [])]  # fmt: skip

    wait_for(lambda: len(stays()) == 2)
    assert stays() == [("gate", "2026-11-25T08:21:30+08:00"), ("ed", "2026-11-25T08:22:00+08:00")]

    def door() -> str | None:
        bundle = http.get("/fhir/Observation", params={
            "code": "https://greenchannel.example.org/fhir/CodeSystem/time-node|door",
            "status": "final"}).json()  # fmt: skip
        values = [e["resource"]["valueDateTime"] for e in bundle.get("entry", [])]
        return values[0] if values == ["2026-11-25T08:21:30+08:00"] else None

    assert wait_for(door) == "2026-11-25T08:21:30+08:00"  # UWB, not the HIS's 08:28
    board = http.get("/api/wristbands").json()
    assert [(b["tag_id"], b["status"], b["encounter_id"]) for b in board] == [
        ("T-42", "silent", "v1")  # its fixes are from 2026-11-25: long silent by now
    ]


def errors(http: httpx.Client, name: str) -> list[str]:
    messages = http.get("/api/messages", params={"channel": name, "status": "error"}).json()
    return [m["error"] or "" for m in messages["messages"]]


def sent(http: httpx.Client, name: str) -> int:
    messages = http.get("/api/messages", params={"channel": name, "status": "sent"}).json()
    return len(messages["messages"])


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[Server]:
    sqlite = database_url.startswith("sqlite")
    running = Server(tmp_path, None if sqlite else database_url)
    base_env = running.env

    def env() -> dict[str, str]:
        # The walks are recorded (stamped 2026-11-25) and replayed now: trusted as the
        # reference clock the RTLS server is, their times stand. Without this the clock
        # monitor rightly finds the gateway a day or more behind and corrects the stays into
        # the replay's own time (test_positions covers that correction).
        return base_env() | {
            "GREENCHANNEL_CLOCKS__TRUSTED": '["uwb-mqtt", "uwb-sewio", "uwb-http"]'
        }

    running.env = env  # type: ignore[method-assign]
    yield running
    if running.process is not None:
        assert running.stop() == 0


def test_pozyx_positions_over_real_mosquitto_become_location_history_and_the_door(
    server: Server,
) -> None:
    topic = f"greenchannel-test/{uuid.uuid4().hex}/tags"
    source = (f"  kind: mqtt\n  host: {MOSQUITTO[0]}\n  port: {MOSQUITTO[1]}\n"
              f"  topics: ['{topic}']\n  client_id: gc-{uuid.uuid4().hex[:12]}")  # fmt: skip
    (server.channels_dir / "uwb-mqtt.yaml").write_text(channel("uwb-mqtt", source))
    server.start()
    with server.http() as http:
        start(server, http)
        wait_for(lambda: http.get("/api/channels").status_code == 200)

        async def publish() -> None:
            async with aiomqtt.Client(*MOSQUITTO) as client:
                for payload in [*walk(pozyx, "T-42"), b"not json {", pozyx("T-999", ARRIVED, 1, 1)]:
                    await client.publish(topic, payload, qos=1)

        time.sleep(1.0)  # the source subscribes once the engine is up
        asyncio.run(publish())
        check_uwb_reached_the_case(http)
        found = wait_for(lambda: (e := errors(http, "uwb-mqtt")) and len(e) == 2 and e)
        assert any("not JSON" in e or "Expecting" in e or "line 1" in e for e in found)
        assert any("tag T-999 is not registered" in e for e in found)


def test_a_sewio_websocket_feed_and_http_posts_do_the_same(server: Server) -> None:
    received: list[dict[str, Any]] = []
    ready = threading.Event()
    stop = threading.Event()
    go = threading.Event()  # the band is bound: push the feed
    ws_port, http_port = free_port(), free_port()

    async def rtls_studio(connection: ServerConnection) -> None:
        """Sewio RTLS Studio: waits for the subscribe envelope, then pushes the feed."""
        received.append(json.loads(await connection.recv()))
        await asyncio.to_thread(go.wait, 60)
        for payload in walk(sewio, "T-42")[:15]:  # the gate half over the WebSocket
            await connection.send(payload.decode())
        await connection.send("garbage, not json")
        await connection.wait_closed()

    def run_studio() -> None:
        async def main() -> None:
            async with serve(rtls_studio, "127.0.0.1", ws_port):
                ready.set()
                await asyncio.to_thread(stop.wait)

        asyncio.run(main())

    studio = threading.Thread(target=run_studio, daemon=True)
    studio.start()
    ready.wait(10)
    try:
        (server.channels_dir / "uwb-sewio.yaml").write_text(channel(
            "uwb-sewio", f"  kind: sewio\n  url: ws://127.0.0.1:{ws_port}\n"))  # fmt: skip
        (server.channels_dir / "uwb-http.yaml").write_text(
            channel(
                "uwb-http", f"  kind: http\n  host: 127.0.0.1\n  port: {http_port}\n  path: /uwb\n"
            )
        )
        server.start()
        with server.http() as http:
            start(server, http)
            go.set()
            wait_for(lambda: len(received) == 1)
            assert received[0] == {"method": "subscribe", "resource": "/feeds/"}
            # the triage half POSTed, as a Sewio integration pushing over HTTP would
            with httpx.Client(
                base_url=f"http://127.0.0.1:{http_port}", headers=http.headers
            ) as post:
                wait_for(lambda: sent(http, "uwb-sewio") == 15)  # the WebSocket half is in
                for payload in walk(sewio, "T-42")[15:]:
                    reply = post.post("/uwb", content=payload,
                                      headers={"Content-Type": "application/json"})  # fmt: skip
                    assert reply.status_code == 202, reply.text
                bad = post.post("/uwb", content=json.dumps({"body": {"id": "T-42",
                                                                     "datastreams": 5}}),
                                headers={"Content-Type": "application/json"})  # fmt: skip
                assert bad.status_code == 202  # journalled; the UWB destination refuses it
            check_uwb_reached_the_case(http)
            assert any("not JSON" in e or "line 1" in e for e in errors(http, "uwb-sewio"))
            (refused,) = wait_for(lambda: errors(http, "uwb-http"))
            assert "$.body" in refused and "datastreams" in refused
    finally:
        go.set()
        stop.set()
        studio.join(10)
