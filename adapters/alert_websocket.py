"""Pathway alerts to websocket clients: the destination `alert-websocket` of the
`pathway-alerts` channel sends each alert message, as journalled, to every client connected at
`/api/alerts/websocket` (the ED board, the cath lab and stroke team screens).

Registered under `greenchannel.destinations` and `greenchannel.routers` as `alert-websocket`;
the two meet in `listeners_for(database)`, the sockets of this process. The endpoint sits behind
the engine's token gate (`Authorization: Bearer <token>` on the upgrade request) and takes only
the roles of the people alerted, `ALERT_ROLES` (403 for another role). A client that
falls `QUEUE_MAX` messages behind is closed (code 1013) rather than silently missing alerts: it
reconnects and lists the open alerts with `GET /api/alerts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, ClassVar, Literal

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters._per_database import PerDatabase
from engine.auth import require_role
from engine.connectors import ConnectorContext, Delivered, Outbound
from engine.errors import RejectedDeliveryError

__all__ = [
    "ALERT_ROLES",
    "AlertListeners",
    "AlertWebsocketConfig",
    "AlertWebsocketDestination",
    "AlertWebsocketDestinationFactory",
    "build_alert_websocket_router",
    "listeners_for",
]

log = logging.getLogger(__name__)

PATH = "/api/alerts/websocket"
# The screens of the people an alert calls to act (ED board, cath lab, stroke team) and admins;
# registry staff read alerts afterwards with `GET /api/alerts`, devices and analysts get none.
ALERT_ROLES = ("clinician", "admin")
QUEUE_MAX = 200
# What the alert channels send: the running clocks' (pathway-alerts), STEMI ECGs'
# (ecg-alerts) and the device clock monitor's (device-clock-alerts); clients tell them
# apart by `kind`.
MESSAGE_KINDS = frozenset({"pathway-alert", "ecg-alert", "clock-alert"})
_OVERFLOW = ""  # put in a client's queue instead of its messages when it fell behind
TRY_AGAIN_LATER = 1013


class AlertListeners:
    """The websocket clients of this process, each with its bounded outgoing queue."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str]] = set()

    def add(self, queue: asyncio.Queue[str]) -> None:
        self._queues.add(queue)

    def discard(self, queue: asyncio.Queue[str]) -> None:
        self._queues.discard(queue)

    def broadcast(self, text: str) -> int:
        """Queue `text` for every client; returns how many got it."""
        reached = 0
        for queue in list(self._queues):
            try:
                queue.put_nowait(text)
                reached += 1
            except asyncio.QueueFull:
                # Behind by QUEUE_MAX alerts: drop its backlog and close it, so it reconnects
                # and lists what is open instead of showing a board with holes.
                self._queues.discard(queue)
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(_OVERFLOW)
                log.warning("alert_websocket.client_overflowed", extra={"queued": QUEUE_MAX})
        return reached


_LISTENERS = PerDatabase(AlertListeners)


def listeners_for(database: AsyncEngine) -> AlertListeners:
    """The one `AlertListeners` of this process for the engine on `database`."""
    return _LISTENERS.get(database)


class AlertWebsocketConfig(BaseModel):
    """Sends each alert of the `pathway-alerts` (or `device-clock-alerts`) channel to every
    client connected at `/api/alerts/websocket` on this engine node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["alert-websocket"] = Field(description="Always `alert-websocket`.")


class AlertWebsocketDestination:
    """Broadcasts one alert message; delivered even with no client connected (the journal and
    `GET /api/alerts` keep it)."""

    def __init__(self, listeners: AlertListeners) -> None:
        self._listeners = listeners

    async def send(self, outbound: Outbound) -> Delivered:
        """Check it is an alert message, then queue it for every connected client."""
        text = _alert_text(outbound.payload)
        reached = self._listeners.broadcast(text)
        return Delivered(detail=f"sent to {reached} websocket client(s)")

    async def aclose(self) -> None:
        """Nothing to close: the clients belong to the HTTP server."""


class AlertWebsocketDestinationFactory:
    """Entry point `greenchannel.destinations: alert-websocket`."""

    config_model: ClassVar[type[BaseModel]] = AlertWebsocketConfig

    def build(self, config: Any, context: ConnectorContext) -> AlertWebsocketDestination:
        """The destination feeding the clients of this process's engine."""
        AlertWebsocketConfig.model_validate(config)
        return AlertWebsocketDestination(listeners_for(context.database))


def build_alert_websocket_router(database: AsyncEngine) -> APIRouter:
    """The `/api/alerts/websocket` endpoint: a client connects and receives alerts; it sends
    nothing (what it sends is read and ignored, so a ping from it does no harm)."""
    listeners = listeners_for(database)
    router = APIRouter(tags=["pathways"])

    @router.websocket(PATH, dependencies=[Depends(require_role(*ALERT_ROLES))])
    async def alert_socket(socket: WebSocket) -> None:
        await socket.accept()
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_MAX)
        listeners.add(queue)
        try:
            async with asyncio.TaskGroup() as group:
                sender = group.create_task(_send(socket, queue))
                await _drain(socket, sender)
                sender.cancel()
        finally:
            listeners.discard(queue)

    return router


async def _drain(socket: WebSocket, sender: asyncio.Task[None]) -> None:
    """Read until the client goes away or the sender gives up on it."""
    receiving = asyncio.ensure_future(socket.receive())
    try:
        while True:
            done, _ = await asyncio.wait([receiving, sender], return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                return
            message = receiving.result()
            if message.get("type") == "websocket.disconnect":
                return
            receiving = asyncio.ensure_future(socket.receive())
    finally:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await receiving


async def _send(socket: WebSocket, queue: asyncio.Queue[str]) -> None:
    while True:
        text = await queue.get()
        try:
            if text == _OVERFLOW:
                await socket.close(TRY_AGAIN_LATER, "too far behind; reconnect and list alerts")
                return
            await socket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            return  # closed meanwhile


def _alert_text(payload: bytes) -> str:
    """The message as text, if it is an alert the scheduler wrote; rejected otherwise."""
    try:
        text = payload.decode("utf-8")
        message = json.loads(text)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("kind") not in MESSAGE_KINDS:
        raise RejectedDeliveryError(
            "the message is not an alert (JSON with kind 'pathway-alert', 'ecg-alert' or "
            "'clock-alert'); only the pathway-alerts, ecg-alerts and device-clock-alerts "
            "channels send to alert-websocket"
        )
    return text
