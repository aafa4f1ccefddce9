"""The websocket channel of FHIR R4 Subscriptions at `/fhir/websocket`: a client sends
`bind <subscription id>`, the server answers `bound <id>` and then sends `ping <id>` each time
a change matches that Subscription.

Registered under `greenchannel.routers` as `fhir-websocket`. The subscriber that finds the
matches (`adapters.fhir_subscriptions`) and this router meet in `pings_for(database)`, the
sockets of this process bound per Subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters._per_database import PerDatabase
from fhir_store import FhirStore, FhirStoreError

__all__ = ["Pings", "build_websocket_router", "pings_for"]

log = logging.getLogger(__name__)

QUEUE_MAX = 100  # pings waiting for a slow socket; past this they are dropped (a ping is a hint)
MAX_MESSAGE_CHARS = 200


class Pings:
    """The websockets of this process bound to each Subscription."""

    def __init__(self) -> None:
        self._bound: dict[str, set[asyncio.Queue[str]]] = {}

    def bind(self, subscription_id: str, queue: asyncio.Queue[str]) -> None:
        """Send the pings of `subscription_id` to `queue`."""
        self._bound.setdefault(subscription_id, set()).add(queue)

    def unbind(self, queue: asyncio.Queue[str]) -> None:
        """Stop sending anything to `queue`."""
        for subscription_id in list(self._bound):
            queues = self._bound[subscription_id]
            queues.discard(queue)
            if not queues:
                del self._bound[subscription_id]

    def ping(self, subscription_id: str) -> int:
        """Tell every socket bound to the Subscription; returns how many there are."""
        queues = self._bound.get(subscription_id, set())
        for queue in queues:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(f"ping {subscription_id}")
        return len(queues)


_PINGS = PerDatabase(Pings)


def pings_for(database: AsyncEngine) -> Pings:
    """The one `Pings` of this process for the FHIR store in `database`."""
    return _PINGS.get(database)


def build_websocket_router(database: AsyncEngine) -> APIRouter:
    """The `/fhir/websocket` endpoint for the Subscriptions in `database`'s FHIR store."""
    pings = pings_for(database)
    store = FhirStore(database)  # reads only: it opens no write connections
    router = APIRouter(prefix="/fhir", tags=["fhir"])

    @router.websocket("/websocket")
    async def subscription_socket(socket: WebSocket) -> None:
        await socket.accept()
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        try:
            async with asyncio.TaskGroup() as group:
                sender = group.create_task(_send(socket, queue))
                await _receive(socket, queue, pings, store)
                sender.cancel()
        finally:
            pings.unbind(queue)

    return router


async def _receive(
    socket: WebSocket, queue: asyncio.Queue[str], pings: Pings, store: FhirStore
) -> None:
    """Answer `bind <id>` until the client goes away."""
    while True:
        try:
            text = await socket.receive_text()
        except WebSocketDisconnect:
            return
        command, _, subscription_id = text[:MAX_MESSAGE_CHARS].strip().partition(" ")
        if command != "bind" or not subscription_id:
            await queue.put("error send 'bind <subscription id>'")
            continue
        problem = await _problem(store, subscription_id.strip())
        if problem is not None:
            await queue.put(f"error {subscription_id} {problem}")
            continue
        pings.bind(subscription_id.strip(), queue)
        await queue.put(f"bound {subscription_id.strip()}")


async def _send(socket: WebSocket, queue: asyncio.Queue[str]) -> None:
    while True:
        text = await queue.get()
        try:
            await socket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            return  # closed meanwhile; the receiver ends too


async def _problem(store: FhirStore, subscription_id: str) -> str | None:
    """Why a socket cannot bind to the Subscription, or None."""
    try:
        subscription = await store.read("Subscription", subscription_id)
    except FhirStoreError:
        return "no such Subscription"
    channel = subscription.get("channel")
    if not isinstance(channel, dict) or channel.get("type") != "websocket":
        return "is not a websocket Subscription"
    if subscription.get("status") not in ("requested", "active"):
        return f"is {subscription.get('status')}"
    return None
