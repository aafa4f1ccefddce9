"""Test helpers for engine tests: a destination scripted by a plain function (our MockTransport)
and a source the test pushes messages into.

Adapter tests never use it; they talk to real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from engine.connectors import Accept, ConnectorContext, Delivered, Inbound, Outbound, Receipt
from engine.errors import InputError

__all__ = [
    "FunctionDestination",
    "FunctionDestinationFactory",
    "PushSource",
    "PushSourceFactory",
]

Handler = Callable[[Outbound], Awaitable[Delivered]]


class FunctionDestination:
    """Delivers by awaiting `handler(outbound)`; the handler raises delivery errors to script
    failures ("fail twice, then succeed")."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.closed = False

    async def send(self, outbound: Outbound) -> Delivered:
        return await self.handler(outbound)

    async def aclose(self) -> None:
        self.closed = True


class FunctionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["function"]
    handler: str  # the name the test registered its handler under


class FunctionDestinationFactory:
    """Builds FunctionDestinations from handlers registered by name in `handlers`."""

    config_model: ClassVar[type[BaseModel]] = FunctionConfig
    handlers: ClassVar[dict[str, Handler]] = {}

    def build(self, config: Any, context: ConnectorContext) -> FunctionDestination:
        return FunctionDestination(self.handlers[config.handler])


class PushConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["push"]
    name: str = "push"


class PushSource:
    """A source the test drives: `await source.push(raw)` goes through `accept` like any
    connector's message and returns the journal receipt."""

    instances: ClassVar[dict[str, PushSource]] = {}

    def __init__(self, name: str, media_type: str = "text/plain") -> None:
        self.name = name
        self.media_type = media_type
        self._accept: Accept | None = None
        self._ready = asyncio.Event()
        self.closed = False

    async def start(self) -> None:
        PushSource.instances[self.name] = self

    async def serve(self, accept: Accept) -> None:
        self._accept = accept
        self._ready.set()
        await asyncio.Event().wait()

    async def push(
        self, raw: bytes, *, dedup_key: str | None = None, problem: InputError | None = None
    ) -> Receipt:
        await self._ready.wait()
        assert self._accept is not None
        return await self._accept(
            Inbound(
                raw=raw,
                media_type=self.media_type,
                received_at=datetime.now(tz=UTC),
                origin=f"push://{self.name}",
                dedup_key=dedup_key,
                problem=problem,
            )
        )

    async def aclose(self) -> None:
        self.closed = True


class PushSourceFactory:
    config_model: ClassVar[type[BaseModel]] = PushConfig

    def build(self, config: Any, context: ConnectorContext) -> PushSource:
        return PushSource(config.name)
