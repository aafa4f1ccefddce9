"""FHIR R4 Subscriptions through a running engine (SQLite and PostgreSQL): rest-hook
notifications to a real local HTTP receiver through the journal, with retries, the error
status, exactly one notification across restarts, and the websocket bind/ping protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.journal import DeliveryAttempt, DestinationDelivery, JournalMessage
from engine.server import Engine
from engine.settings import Settings
from engine.testing import running_engine, settings_for_tests, wait_until
from fhir_store import FhirStore
from fhir_store.app import create_database

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-for-subscriptions"
LOINC = "http://loinc.org"
HEART_RATE = "8867-4"
CHANNEL = "fhir-subscriptions"


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records requests and answers with scripted
    statuses (the last one repeats)."""

    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((request.method, request.url.path, dict(request.headers), body))
        status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
        return Response(status_code=status)


@contextlib.asynccontextmanager
async def receiving(statuses: list[int]) -> AsyncIterator[Receiver]:
    receiver = Receiver(statuses=statuses)
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["GET", "POST", "PUT"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: _true(server.started), timeout_s=5)
        port = server.servers[0].sockets[0].getsockname()[1]
        receiver.url = f"http://127.0.0.1:{port}/hooks"
        yield receiver
    finally:
        server.should_exit = True
        await task


async def _true(value: bool) -> bool:
    return value


@dataclass
class Site:
    """What the tests share: the settings of an engine, and a FHIR store on its database."""

    settings: Settings
    database: AsyncEngine
    store: FhirStore

    def engine(self) -> contextlib.AbstractAsyncContextManager[Engine]:
        return running_engine(self.settings)

    async def subscribe(self, channel: dict[str, Any], criteria: str | None = None) -> str:
        subscription = await self.store.create(
            {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "heart rate to the chest pain board",
                "criteria": criteria or f"Observation?code={LOINC}|{HEART_RATE}",
                "channel": channel,
            }
        )
        return str(subscription["id"])

    async def status(self, subscription_id: str) -> dict[str, Any]:
        return await self.store.read("Subscription", subscription_id)

    async def wait_for_status(self, subscription_id: str, status: str) -> dict[str, Any]:
        async def reached() -> bool:
            return (await self.status(subscription_id))["status"] == status

        await wait_until(reached, timeout_s=20)
        return await self.status(subscription_id)

    async def observe(self, code: str = HEART_RATE, value: float = 88) -> dict[str, Any]:
        return await self.store.create(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "valueQuantity": {"value": value, "unit": "/min"},
            }
        )

    async def journal(self) -> list[tuple[str, str, int, list[str]]]:
        """Per message of the channel: its status, its delivery's status and attempts, and
        each attempt's outcome."""
        sessions = async_sessionmaker(self.database, expire_on_commit=False)
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(JournalMessage.status, DestinationDelivery)
                    .join(DestinationDelivery, DestinationDelivery.message_id == JournalMessage.id)
                    .where(JournalMessage.channel == CHANNEL)
                    .order_by(JournalMessage.id)
                )
            ).all()
            found = []
            for status, delivery in rows:
                outcomes = await session.scalars(
                    select(DeliveryAttempt.outcome)
                    .where(DeliveryAttempt.delivery_id == delivery.id)
                    .order_by(DeliveryAttempt.attempt)
                )
                found.append((status, delivery.status, delivery.attempts, list(outcomes)))
            return found

    async def channel_messages(self) -> int:
        async with self.database.connect() as connection:
            count = await connection.scalar(
                select(func.count()).where(JournalMessage.channel == CHANNEL)
            )
            return int(count or 0)


@pytest.fixture
async def site(database_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    # The shipped channel file, with short backoffs and an early error status for the tests.
    shipped = (ROOT / "channels" / f"{CHANNEL}.yaml").read_text()
    channel = (
        shipped.replace("initial_backoff_s: 1,", "initial_backoff_s: 0.05,")
        .replace("max_backoff_s: 60,", "max_backoff_s: 0.2,")
        .replace("error_after_attempts: 10", "error_after_attempts: 3")
    )
    settings = settings_for_tests(
        tmp_path, database_url, channels={CHANNEL: channel}, admin_token=TOKEN
    )
    database = create_database(database_url)
    store = FhirStore(database)
    try:
        yield Site(settings, database, store)
    finally:
        await store.aclose()
        await database.dispose()


async def until(predicate: Callable[[], bool], timeout_s: float = 20) -> None:
    async def check() -> bool:
        return predicate()

    await wait_until(check, timeout_s=timeout_s)


async def test_rest_hook_gets_one_empty_post_per_matching_change(site: Site) -> None:
    async with receiving([200]) as receiver, site.engine():
        subscription_id = await site.subscribe(
            {
                "type": "rest-hook",
                "endpoint": receiver.url,
                "header": ["Authorization: Bearer ward-secret"],
            }
        )
        active = await site.wait_for_status(subscription_id, "active")
        await site.observe(code="2708-6")  # oxygen saturation: does not match
        await site.observe()
        await until(lambda: len(receiver.received) >= 1)
        await asyncio.sleep(0.5)  # time for a wrong second notification to show up

        journal = await site.journal()

    assert "error" not in active
    assert len(receiver.received) == 1
    method, path, headers, body = receiver.received[0]
    assert (method, path, body) == ("POST", "/hooks", b"")
    assert headers["authorization"] == "Bearer ward-secret"
    assert journal == [("sent", "sent", 1, ["sent"])]


async def test_with_a_payload_the_resource_is_put_and_a_failing_receiver_is_retried(
    site: Site,
) -> None:
    async with receiving([503, 503, 200]) as receiver, site.engine():
        subscription_id = await site.subscribe(
            {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"}
        )
        await site.wait_for_status(subscription_id, "active")
        observation = await site.observe(value=131)
        await until(lambda: len(receiver.received) >= 3)
        await wait_until(lambda: _sent(site), timeout_s=20)
        journal = await site.journal()
        after = await site.status(subscription_id)

    methods = [(method, path) for method, path, _, _ in receiver.received]
    assert methods == [("PUT", f"/hooks/Observation/{observation['id']}")] * 3
    sent = json.loads(receiver.received[-1][3])
    assert sent["id"] == observation["id"]
    assert sent["valueQuantity"]["value"] == 131
    assert receiver.received[-1][2]["content-type"] == "application/fhir+json"
    assert journal == [("sent", "sent", 3, ["retry", "retry", "sent"])]
    assert after["status"] == "active"


async def _sent(site: Site) -> bool:
    journal = await site.journal()
    return bool(journal) and journal[0][1] == "sent"


async def test_a_receiver_that_keeps_failing_puts_the_subscription_in_error(site: Site) -> None:
    async with receiving([500]) as receiver, site.engine():
        subscription_id = await site.subscribe({"type": "rest-hook", "endpoint": receiver.url})
        await site.wait_for_status(subscription_id, "active")
        await site.observe()
        failed = await site.wait_for_status(subscription_id, "error")
        await asyncio.sleep(0.3)
        await site.observe(value=95)  # an errored Subscription gets nothing more
        await asyncio.sleep(1.0)
        journal = await site.journal()

    assert len(receiver.received) == 3  # error_after_attempts in the test's channel file
    assert "HTTP 500" in failed["error"]
    assert journal == [("error", "error", 3, ["retry", "retry", "rejected"])]


async def test_a_subscription_with_bad_criteria_goes_to_error_saying_why(site: Site) -> None:
    async with site.engine():
        subscription_id = await site.subscribe(
            {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hooks"},
            criteria="Observation?colour=blue",
        )
        failed = await site.wait_for_status(subscription_id, "error")

    assert "colour" in failed["error"]


async def test_a_subscription_past_its_end_is_switched_off_and_not_notified(site: Site) -> None:
    async with receiving([200]) as receiver, site.engine():
        soon = datetime.now(UTC) + timedelta(seconds=3)
        subscription_id = await site.store.create(
            {
                "resourceType": "Subscription",
                "status": "requested",
                "reason": "until the end of the shift",
                "criteria": f"Observation?code={LOINC}|{HEART_RATE}",
                "end": soon.isoformat(),
                "channel": {"type": "rest-hook", "endpoint": receiver.url},
            }
        )
        await site.wait_for_status(subscription_id["id"], "active")
        await site.observe()
        await until(lambda: len(receiver.received) == 1)
        await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.2)
        await site.observe(value=140)
        ended = await site.wait_for_status(subscription_id["id"], "off")
        await asyncio.sleep(0.5)

    assert ended["end"] == soon.isoformat()
    assert len(receiver.received) == 1


async def test_a_change_made_while_the_engine_is_down_is_notified_once_after_restarts(
    site: Site,
) -> None:
    async with receiving([200]) as receiver:
        async with site.engine():
            subscription_id = await site.subscribe({"type": "rest-hook", "endpoint": receiver.url})
            await site.wait_for_status(subscription_id, "active")
        await site.observe()  # the engine is stopped: only the change log has it
        async with site.engine():
            await until(lambda: len(receiver.received) >= 1)
            await wait_until(lambda: _sent(site), timeout_s=20)
        # A crash after the notification was journalled but before the cursor was committed:
        # the event is read again, and the journal recognises the notification as a resend.
        async with site.database.begin() as connection:
            await connection.execute(text("UPDATE fhir_change_cursor SET seq = 0"))
        async with site.engine():
            await asyncio.sleep(1.5)
            messages = await site.channel_messages()

    assert len(receiver.received) == 1
    assert messages == 1


async def test_websocket_binds_and_pings_on_each_match(site: Site) -> None:
    async with site.engine() as engine:
        subscription_id = await site.subscribe({"type": "websocket"})
        await site.wait_for_status(subscription_id, "active")
        url = f"ws://127.0.0.1:{engine.http_port}/fhir/websocket"
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {TOKEN}"}
        ) as socket:
            await socket.send("bind nonexistent")
            refused = await asyncio.wait_for(socket.recv(), 10)
            await socket.send(f"bind {subscription_id}")
            bound = await asyncio.wait_for(socket.recv(), 10)
            await site.observe(code="2708-6")  # does not match
            await site.observe()
            ping = await asyncio.wait_for(socket.recv(), 10)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(socket.recv(), 0.5)  # one match, one ping

    assert refused == "error nonexistent no such Subscription"
    assert bound == f"bound {subscription_id}"
    assert ping == f"ping {subscription_id}"


async def test_websocket_refuses_a_client_without_a_token(site: Site) -> None:
    async with site.engine() as engine:
        url = f"ws://127.0.0.1:{engine.http_port}/fhir/websocket"
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url):
                pass
