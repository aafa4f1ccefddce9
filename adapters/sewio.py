"""The Sewio RTLS WebSocket source: connects to an RTLS Studio server, subscribes to its
feeds and journals every message it pushes (tag positions, zone changes, button presses).

Registered under `greenchannel.sources` as `sewio`. After the WebSocket opens it sends, per
resource, Sewio's subscribe envelope `{"headers": {"X-ApiKey": KEY}, "method": "subscribe",
"resource": "/feeds/"}`; the server then pushes `{"resource": "/feeds/18", "body": {...}}`
messages. The API key comes from an environment variable. A lost connection is re-opened with
backoff and the subscriptions sent again. The same feed POSTed over HTTP needs no adapter of
its own: the `http` source takes it.

A text frame that is not JSON is journalled with status ERROR and the reason; the feed goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from adapters.jsoninput import parse_for_mapping
from adapters.secrets import from_environment
from devices.uwb.fixes import newest_fix_time
from engine.connectors import Accept, ConnectorContext, Inbound
from engine.errors import InputError

__all__ = ["SewioSource", "SewioSourceConfig", "SewioSourceFactory"]

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 30.0
MEDIA_TYPE = "application/json"


class SewioSourceConfig(BaseModel):
    """A subscription to a Sewio RTLS Studio WebSocket feed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sewio"] = Field(description="Selects the Sewio WebSocket source.")
    url: str = Field(
        pattern=r"^wss?://",
        description="The RTLS Studio WebSocket URL, e.g. ws://rtls.example.local:8080",
    )
    resources: tuple[str, ...] = Field(
        ("/feeds/",),
        min_length=1,
        description="Resources to subscribe to: /feeds/ (every tag), /feeds/18, /zones ...",
    )
    api_key_env: str | None = Field(
        None, description="Environment variable holding the RTLS Studio API key (X-ApiKey)."
    )
    open_timeout_s: float = Field(10.0, gt=0, description="Deadline for opening the socket.")


class SewioSource:
    """Keeps a WebSocket subscription open until cancelled."""

    def __init__(self, config: SewioSourceConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._key: str | None = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        """Check the API key variable; the server being down is not a deploy error."""
        self._key = from_environment(
            self._config.api_key_env, key="source.api_key_env", what="RTLS Studio API key"
        )

    async def serve(self, accept: Accept) -> None:
        backoff = 0.5
        while True:
            try:
                await self._session(accept)
                backoff = 0.5
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.connected.clear()
                log.warning(
                    "sewio_source.disconnected",
                    extra={"channel": self._context.channel, "reason": str(exc)},
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _session(self, accept: Accept) -> None:
        config = self._config
        async with connect(
            config.url, open_timeout=config.open_timeout_s, max_size=1024 * 1024
        ) as socket:
            for resource in config.resources:
                envelope: dict[str, Any] = {"method": "subscribe", "resource": resource}
                if self._key is not None:
                    envelope["headers"] = {"X-ApiKey": self._key}
                await socket.send(json.dumps(envelope))
            self.connected.set()
            async for frame in socket:
                raw = frame.encode("utf-8") if isinstance(frame, str) else bytes(frame)
                await accept(self._inbound(raw))

    def _inbound(self, raw: bytes) -> Inbound:
        problem: InputError | None = None
        try:
            parse_for_mapping(raw, "utf-8")
        except InputError as exc:
            problem = exc
        return Inbound(
            raw=raw,
            media_type=MEDIA_TYPE,
            received_at=datetime.now(self._context.timezone),
            origin=self._config.url[:200],
            dedup_key=f"sewio:{hashlib.sha256(raw).hexdigest()[:40]}",
            problem=problem,
            # The newest fix by the gateway's clock against the receipt: its clock's offset.
            sent_at=newest_fix_time(raw) if problem is None else None,
        )

    async def aclose(self) -> None:
        """Cancelling `serve` closes the socket."""
        self.connected.clear()


class SewioSourceFactory:
    """Entry point `greenchannel.sources: sewio`."""

    config_model: ClassVar[type[BaseModel]] = SewioSourceConfig

    def build(self, config: Any, context: ConnectorContext) -> SewioSource:
        checked = (
            config
            if isinstance(config, SewioSourceConfig)
            else SewioSourceConfig.model_validate(config)
        )
        return SewioSource(checked, context)
