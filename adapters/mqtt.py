"""The MQTT source: subscribes to topics on an MQTT broker (a Pozyx gateway's `tags` stream, a
Mosquitto the gateways publish to) and journals every PUBLISH as one message.

Registered under `greenchannel.sources` as `mqtt`. Built on aiomqtt: asyncio-native like the
engine, and a thin layer over paho-mqtt, the Eclipse reference client. With QoS 1 the broker's
PUBACK is sent only after the message is journalled (paho's manual acknowledgement), so a crash
before the commit makes the broker deliver it again; with a persistent session
(`clean_session: false`, a fixed `client_id`) the broker also keeps what arrives while the
engine is down. A lost connection is re-opened with backoff.

A payload that is not JSON (when `media_type` is a JSON type) is journalled with status ERROR
and the reason (line and column); the subscription goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import datetime
from typing import Any, ClassVar, Literal

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field

from adapters.jsoninput import parse_for_mapping
from adapters.secrets import from_environment
from devices.uwb.fixes import newest_fix_time
from engine.connectors import Accept, ConnectorContext, Inbound
from engine.errors import InputError

__all__ = ["MqttSource", "MqttSourceConfig", "MqttSourceFactory"]

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 30.0


class MqttSourceConfig(BaseModel):
    """An MQTT subscription: every message on the topics becomes one journalled message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mqtt"] = Field(description="Selects the MQTT source.")
    host: str = Field("127.0.0.1", description="The broker's host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="The broker's port (8883 for TLS).")
    topics: tuple[str, ...] = Field(
        ("tags",),
        min_length=1,
        description="Topic filters to subscribe to (`tags` for a Pozyx gateway, `tags/#` ...).",
    )
    qos: Literal[0, 1] = Field(
        1, description="1: at least once, acknowledged after the journal commit; 0: best effort."
    )
    client_id: str | None = Field(
        None,
        max_length=64,
        description="MQTT client id; with clean_session false the broker keeps the session "
        "(and the messages) under it while the engine is away. Default: greenchannel-<channel>.",
    )
    clean_session: bool = Field(
        False, description="false keeps a persistent session at the broker (needs client_id)."
    )
    username: str | None = Field(None, description="User name at the broker, if it asks.")
    password_env: str | None = Field(
        None,
        description="Name of the environment variable holding the password (never the "
        "password itself: secrets stay out of channel files).",
    )
    tls: bool = Field(False, description="Connect with TLS (the system's CA certificates).")
    clock: Literal["none", "uwb-fixes"] = Field(
        "none",
        description="Where the sender's own time is, for its clock offset (docs/clocks.md): "
        "`uwb-fixes` takes a Pozyx/Sewio position message's newest fix time.",
    )
    media_type: str = Field(
        "application/json", description="Media type journalled with every payload."
    )
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive interval.")


class MqttSource:
    """Subscribes until cancelled; reconnects with backoff."""

    def __init__(self, config: MqttSourceConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._password: str | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Check what can be checked without the broker: the password variable exists.
        The broker being down is not a deploy error: `serve` keeps trying."""
        self._password = from_environment(
            self._config.password_env, key="source.password_env", what="broker password"
        )

    async def serve(self, accept: Accept) -> None:
        backoff = 0.5
        while True:
            try:
                await self._session(accept)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                log.warning(
                    "mqtt_source.disconnected",
                    extra={"channel": self._context.channel, "reason": str(exc)},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
            else:
                backoff = 0.5

    async def _session(self, accept: Accept) -> None:
        config = self._config
        client = aiomqtt.Client(
            config.host,
            config.port,
            identifier=config.client_id or f"greenchannel-{self._context.channel}"[:64],
            clean_session=config.clean_session,
            username=config.username,
            password=self._password,
            keepalive=config.keepalive_s,
            tls_params=aiomqtt.TLSParameters() if config.tls else None,
        )
        manual = config.qos == 1
        # aiomqtt has no switch for it: paho's own manual acknowledgement, set before the
        # connection opens, holds each PUBACK until `ack` below (after the journal commit).
        paho = client._client
        paho.manual_ack_set(manual)
        async with client:
            for topic in config.topics:
                await client.subscribe(topic, qos=config.qos)
            self.connected.set()
            log.info(
                "mqtt_source.subscribed",
                extra={"channel": self._context.channel, "topics": list(config.topics)},
            )
            async for message in client.messages:
                await accept(self._inbound(message))
                if manual and message.qos > 0:
                    paho.ack(message.mid, message.qos)

    def _inbound(self, message: aiomqtt.Message) -> Inbound:
        payload = message.payload
        raw = payload if isinstance(payload, bytes | bytearray) else str(payload or "").encode()
        raw = bytes(raw)
        topic = str(message.topic)
        problem: InputError | None = None
        if "json" in self._config.media_type:
            try:
                parse_for_mapping(raw, "utf-8")
            except InputError as exc:
                problem = exc
        digest = hashlib.sha256(raw).hexdigest()[:40]
        return Inbound(
            raw=raw,
            media_type=self._config.media_type,
            received_at=datetime.now(self._context.timezone),
            origin=f"mqtt://{self._config.host}:{self._config.port}/{topic}"[:200],
            # a gateway resending the same update (QoS 1 redelivery) is applied once
            dedup_key=f"mqtt:{digest}",
            problem=problem,
            # The newest fix by the gateway's clock against the receipt: its clock's offset.
            sent_at=newest_fix_time(raw)
            if problem is None and self._config.clock == "uwb-fixes"
            else None,
        )

    async def aclose(self) -> None:
        """Nothing held outside `serve`: cancelling it closes the connection."""
        with contextlib.suppress(Exception):
            self.connected.clear()


class MqttSourceFactory:
    """Entry point `greenchannel.sources: mqtt`."""

    config_model: ClassVar[type[BaseModel]] = MqttSourceConfig

    def build(self, config: Any, context: ConnectorContext) -> MqttSource:
        checked = (
            config
            if isinstance(config, MqttSourceConfig)
            else MqttSourceConfig.model_validate(config)
        )
        return MqttSource(checked, context)
