"""Running-clock alerts through a running engine (SQLite and PostgreSQL): a case opened and fed
the way staff do it through /api/cases (the pathway engine's `Cases`) starts a clock in the
pathway subscriber, the alert is raised at its deadline into the `pathway-alerts`
channel, reaches a websocket client, is listed by `GET /api/alerts`, is resolved when the end
node arrives, and is neither raised nor resolved again after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from adapters.alert_websocket import QUEUE_MAX, AlertListeners, AlertWebsocketDestination
from engine import journal
from engine.auth import issue_token
from engine.connectors import Outbound
from engine.errors import RejectedDeliveryError
from engine.server import Engine
from engine.settings import Settings
from engine.testing import running_engine, settings_for_tests, wait_until
from fhir_store import FhirStore
from fhir_store.app import create_database
from pathways.cases import Cases
from pathways.definitions import load_pathways
from pathways.nodes import Nodes
from pathways.records import Records

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-for-alerts"
CHANNEL = "pathway-alerts"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Site:
    settings: Settings
    database: AsyncEngine
    store: FhirStore

    def engine(self) -> contextlib.AbstractAsyncContextManager[Engine]:
        return running_engine(self.settings)

    @property
    def cases(self) -> Cases:
        """What the /api/cases router does, on this site's store."""
        records = Records(self.store, self.settings.tz)
        return Cases(Nodes(records, load_pathways(ROOT / "config" / "pathways")))

    async def chest_pain_case(self, door: datetime) -> str:
        """A walk-in chest pain case for in-hospital lysis, through the door at `door`."""
        patient = await self.store.create({"resourceType": "Patient"})
        case, _ = await self.cases.activate_manually(
            "chest_pain",
            f"Patient/{patient['id']}",
            door,
            arrival_mode="self",
            who="护士甲",
            why="chest pain at triage",
        )
        await self.cases.set_manual_fact(
            case, "reperfusion", "in_hospital_lysis", who="医生乙", why=None
        )
        await self.node(str(case["id"]), "door", door)
        return str(case["id"])

    async def node(self, case_id: str, key: str, at: datetime) -> None:
        episode = await self.store.read("EpisodeOfCare", case_id)
        await self.cases.enter_node(
            episode, key, at, who="护士甲", why="entered at the bedside", correction=False
        )

    async def close(self, case_id: str, at: datetime) -> None:
        """The patient is discharged (a closing node of the chest pain pathway)."""
        await self.node(case_id, "discharge", at)

    async def channel_messages(self) -> int:
        async with AsyncSession(self.database) as session:
            counts = await journal.count_by_status(session)
        return sum(n for (channel, _), n in counts.items() if channel == CHANNEL)


@pytest.fixture
async def site(database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    shipped = (ROOT / "channels" / f"{CHANNEL}.yaml").read_text(encoding="utf-8")
    settings = settings_for_tests(
        tmp_path, database_url, channels={CHANNEL: shipped}, admin_token=TOKEN
    )
    database = create_database(database_url)
    store = FhirStore(database)
    try:
        yield Site(settings, database, store)
    finally:
        await store.aclose()
        await database.dispose()


def _local_now(engine: Engine) -> datetime:
    return datetime.now(engine.settings.tz).replace(microsecond=0)


async def _next_alert(socket: Any, timeout_s: float = 15) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), timeout_s))
    return message


async def _alerts(engine: Engine, **params: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{engine.http_port}") as client:
        response = await client.get("/api/alerts", params=params, headers=AUTH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_alert_reaches_the_websocket_and_the_api_and_is_resolved_once(
    site: Site,
) -> None:
    async with site.engine() as engine:
        url = f"ws://127.0.0.1:{engine.http_port}/api/alerts/websocket"
        async with websockets.connect(url, additional_headers=AUTH) as socket:
            # The door-to-needle warning (20 min, config/pathways/chest_pain.yaml `clocks:`) is
            # due two seconds from now.
            door = _local_now(engine) - timedelta(minutes=20) + timedelta(seconds=2)
            case_id = await site.chest_pain_case(door)
            raised = await _next_alert(socket)
            listed_open = await _alerts(engine, status="open", case=case_id)
            await site.node(case_id, "lytic_start", _local_now(engine))
            resolved = await _next_alert(socket)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(socket.recv(), 1.0)  # nothing more
            open_after = await _alerts(engine, status="open")
            everything = await _alerts(engine, status="all", case=case_id)

    alert_id = f"{case_id}/cpc.d2n/warning"
    assert (raised["event"], raised["alert"]) == ("raised", alert_id)
    assert raised["rule"]["protects"] == "cpc.d2n"
    assert raised["deadline"] == (door + timedelta(minutes=20)).isoformat()
    assert datetime.fromisoformat(raised["at"]) >= door + timedelta(minutes=20)
    assert [a["alert"] for a in listed_open["alerts"]] == [alert_id]
    assert listed_open["alerts"][0]["raised"] == raised
    assert (resolved["event"], resolved["alert"]) == ("resolved", alert_id)
    assert resolved["resolution"]["reason"] == "end_node"
    assert resolved["resolution"]["end_node"] == "lytic_start"
    assert open_after["alerts"] == []
    (record,) = everything["alerts"]
    assert (record["status"], record["raised"], record["resolved"]) == (
        "resolved",
        raised,
        resolved,
    )


async def test_a_restart_does_not_raise_an_alert_again_and_resolves_it_once(site: Site) -> None:
    async with site.engine() as engine:
        door = _local_now(engine) - timedelta(minutes=21)  # the warning is overdue
        case_id = await site.chest_pain_case(door)

        async def raised() -> bool:
            return await site.channel_messages() == 1

        await wait_until(raised, timeout_s=20)
    async with site.engine() as engine:
        await asyncio.sleep(1.0)  # a restarted scheduler has rebuilt and looked by now
        after_restart = await site.channel_messages()
        await site.node(case_id, "lytic_start", _local_now(engine))

        async def resolved() -> bool:
            return await site.channel_messages() == 2

        await wait_until(resolved, timeout_s=20)
        listed = await _alerts(engine, status="all")

    assert after_restart == 1
    assert await site.channel_messages() == 2
    assert [a["status"] for a in listed["alerts"]] == ["resolved"]


async def test_a_deadline_long_past_is_journalled_and_listed_but_pushed_to_nobody(
    site: Site,
) -> None:
    """A case from a replayed backlog (door three days ago, no needle): the missed door-to-needle
    steps are journalled and listed as late-discovered at severity info; the websocket, where
    people are alerted, gets nothing; a case of now still reaches it."""
    async with site.engine() as engine:
        url = f"ws://127.0.0.1:{engine.http_port}/api/alerts/websocket"
        async with websockets.connect(url, additional_headers=AUTH) as socket:
            old_case = await site.chest_pain_case(_local_now(engine) - timedelta(days=3))

            async def journalled() -> bool:
                listed = await _alerts(engine, status="open", case=old_case)
                return len(listed["alerts"]) >= 1

            await wait_until(journalled, timeout_s=20)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(socket.recv(), 1.5)  # nobody paged
            door = _local_now(engine) - timedelta(minutes=20) + timedelta(seconds=1)
            new_case = await site.chest_pain_case(door)
            pushed = await _next_alert(socket)
            listed = await _alerts(engine, status="open", case=old_case)

    late = [a["raised"] for a in listed["alerts"]]
    assert late and all(r["late_discovered"] is True for r in late)
    assert all(r["step"]["severity"] == "info" for r in late)
    assert {r["step"]["severity_on_time"] for r in late} <= {"warning", "critical"}
    assert pushed["case"]["id"] == new_case and "late_discovered" not in pushed


async def test_a_late_alert_resolved_after_a_restart_stays_late_and_pages_nobody(
    site: Site,
) -> None:
    """A late-discovered alert raised before a restart and resolved after it: the restarted
    scheduler (no memory of the raise) still flags the resolution, so the websocket stays
    silent while the journal and the listing hold it."""
    async with site.engine() as engine:
        case_id = await site.chest_pain_case(_local_now(engine) - timedelta(days=3))

        async def journalled() -> bool:
            listed = await _alerts(engine, status="open", case=case_id)
            return len(listed["alerts"]) >= 1

        await wait_until(journalled, timeout_s=20)
    async with site.engine() as engine:
        url = f"ws://127.0.0.1:{engine.http_port}/api/alerts/websocket"
        async with websockets.connect(url, additional_headers=AUTH) as socket:
            await site.node(case_id, "lytic_start", _local_now(engine))

            async def resolved() -> bool:
                listed = await _alerts(engine, status="open", case=case_id)
                return listed["alerts"] == []

            await wait_until(resolved, timeout_s=20)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(socket.recv(), 1.5)  # nobody paged for the end either
            everything = await _alerts(engine, status="all", case=case_id)

    assert everything["alerts"]
    for alert in everything["alerts"]:
        assert alert["resolved"]["resolution"]["reason"] == "end_node"
        assert alert["resolved"]["late_discovered"] is True, alert["alert"]


async def test_the_websocket_and_the_listing_refuse_a_client_without_a_token(site: Site) -> None:
    async with site.engine() as engine:
        url = f"ws://127.0.0.1:{engine.http_port}/api/alerts/websocket"
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url):
                pass
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{engine.http_port}") as client:
            response = await client.get("/api/alerts")
            bad_status = await client.get("/api/alerts?status=closed", headers=AUTH)

    assert response.status_code == 401
    assert bad_status.status_code == 422


async def test_the_websocket_takes_clinicians_and_admins_and_refuses_other_roles(
    site: Site,
) -> None:
    """A registry clerk's or a device's token is valid everywhere it may be, but the alert
    websocket (where people are paged) answers 403 to it; a clinician's token connects."""
    async with site.engine() as engine:
        now = datetime.now(engine.settings.tz)
        tokens = {
            role: await issue_token(engine.database, f"ws-{role}", role, now)
            for role in ("clinician", "registry-staff", "device", "interface-analyst")
        }
        url = f"ws://127.0.0.1:{engine.http_port}/api/alerts/websocket"
        refused = {}
        for role in ("registry-staff", "device", "interface-analyst"):
            headers = {"Authorization": f"Bearer {tokens[role]}"}
            with pytest.raises(websockets.InvalidStatus) as caught:
                async with websockets.connect(url, additional_headers=headers):
                    pass
            refused[role] = caught.value.response.status_code
        headers = {"Authorization": f"Bearer {tokens['clinician']}"}
        async with websockets.connect(url, additional_headers=headers) as socket:
            door = _local_now(engine) - timedelta(minutes=20) + timedelta(seconds=1)
            case_id = await site.chest_pain_case(door)
            raised = await _next_alert(socket)

    assert refused == {"registry-staff": 403, "device": 403, "interface-analyst": 403}
    assert (raised["event"], raised["case"]["id"]) == ("raised", case_id)


async def test_closing_the_case_resolves_its_open_alert(site: Site) -> None:
    async with site.engine() as engine:
        case_id = await site.chest_pain_case(_local_now(engine) - timedelta(minutes=21))

        async def journalled(count: int) -> None:
            async def reached() -> bool:
                return await site.channel_messages() == count

            await wait_until(reached, timeout_s=20)

        await journalled(1)
        await site.close(case_id, _local_now(engine))
        await journalled(2)
        listed = await _alerts(engine, status="all", case=case_id)

    (alert,) = listed["alerts"]
    assert alert["status"] == "resolved"
    assert alert["resolved"]["resolution"] == {
        "reason": "case_closed",
        "detail": "the case was closed",
    }


async def test_a_client_too_far_behind_is_told_to_reconnect_instead_of_missing_alerts() -> None:
    listeners = AlertListeners()
    slow: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
    keeping_up: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
    listeners.add(slow)
    listeners.add(keeping_up)
    for number in range(QUEUE_MAX):
        listeners.broadcast(f"alert {number}")
        keeping_up.get_nowait()

    reached = listeners.broadcast("one too many")

    assert reached == 1
    assert slow.qsize() == 1  # only the close marker: its sender closes the socket (1013)
    assert keeping_up.get_nowait() == "one too many"
    assert listeners.broadcast("later") == 1


async def test_the_destination_refuses_what_is_not_an_alert() -> None:
    destination = AlertWebsocketDestination(AlertListeners())
    outbound = Outbound(1, CHANNEL, "websocket", b'{"kind": "lab-result"}', "application/json", 1)

    with pytest.raises(RejectedDeliveryError, match="not an alert"):
        await destination.send(outbound)
    ecg = Outbound(2, "ecg-alerts", "websocket", b'{"kind": "ecg-alert"}', "application/json", 1)
    assert "0 websocket client" in (await destination.send(ecg)).detail


async def test_the_destination_sends_device_clock_alerts_too() -> None:
    listeners = AlertListeners()
    client: asyncio.Queue[str] = asyncio.Queue(10)
    listeners.add(client)
    destination = AlertWebsocketDestination(listeners)
    payload = b'{"kind": "clock-alert", "event": "raised"}'
    outbound = Outbound(1, "device-clock-alerts", "websocket", payload, "application/json", 1)

    delivered = await destination.send(outbound)

    assert delivered.detail == "sent to 1 websocket client(s)"
    assert client.get_nowait() == payload.decode()
