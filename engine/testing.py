"""Test helpers for engine tests: a destination scripted by a plain function (our MockTransport),
a source the test pushes messages into, and a whole engine run in-process for component tests.

Adapter tests never use it; they talk to real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from pydantic import BaseModel, ConfigDict
from starlette.requests import HTTPConnection

from engine.connectors import (
    Accept,
    ConnectorContext,
    Delivered,
    Inbound,
    Outbound,
    Parser,
    Receipt,
)
from engine.errors import InputError, ParseError
from engine.plugins import Plugins
from engine.server import Engine
from engine.settings import Settings

__all__ = [
    "as_role",
    "FunctionDestination",
    "FunctionDestinationFactory",
    "KeyValueDocument",
    "PushSource",
    "PushSourceFactory",
    "parse_key_value",
    "plugins_for_tests",
    "running_engine",
    "settings_for_tests",
    "wait_until",
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


class KeyValueDocument:
    """`key=value` lines read by JSON-style paths (`$.key`): the smallest Document, so engine
    tests depend on no real message format."""

    media_type = "text/plain"

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values

    def get(self, path: str) -> str | None:
        return self.values.get(path.removeprefix("$.")) or None

    def all(self, path: str) -> list[str]:
        value = self.get(path)
        return [value] if value else []

    def each(self, path: str) -> list[KeyValueDocument]:
        return [self]


def parse_key_value(raw: bytes, charset: str) -> KeyValueDocument:
    """The parser for `text/plain` in engine tests; a line without `=` is a ParseError."""
    values: dict[str, str] = {}
    for number, line in enumerate(raw.decode(charset).splitlines(), 1):
        key, sep, value = line.partition("=")
        if not sep:
            raise ParseError("expected key=value", location=f"line {number}")
        values[key.strip()] = value.strip()
    return KeyValueDocument(values)


def plugins_for_tests() -> Plugins:
    """Plugins for engine tests: the push source, function destinations, key=value parser."""
    return Plugins(
        sources={"push": PushSourceFactory()},
        destinations={"function": FunctionDestinationFactory()},
        parsers={"text/plain": cast(Parser, parse_key_value)},
    )


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 20, every_s: float = 0.02
) -> None:
    """Poll `predicate` until it holds; TimeoutError after `timeout_s`.

    Tests poll what a user would look at (the journal, the FHIR store), not in-memory events.
    """
    async with asyncio.timeout(timeout_s):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(every_s)


def settings_for_tests(
    folder: Path, database_url: str, *, channels: Mapping[str, str], admin_token: str
) -> Settings:
    """An engine's settings in `folder`: these channel files (name -> YAML text), an empty
    mappings folder, a free HTTP port, and `admin_token` accepted."""
    channels_dir = folder / "channels"
    channels_dir.mkdir(parents=True, exist_ok=True)
    for name, text in channels.items():
        (channels_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
    (folder / "mappings").mkdir(exist_ok=True)
    return Settings(
        data_dir=folder / "var",
        database_url=database_url,
        http_port=0,
        channels_dir=channels_dir,
        mappings_dir=folder / "mappings",
        admin_token=admin_token,
    )


@contextlib.asynccontextmanager
async def running_engine(
    settings: Settings, *, start_timeout_s: float = 30
) -> AsyncIterator[Engine]:
    """`greenchannel serve` in this process until the block ends; raises what stopped a start."""
    engine = Engine(settings)
    task = asyncio.create_task(engine.run())
    try:
        async with asyncio.timeout(start_timeout_s):
            ready = asyncio.create_task(engine.ready.wait())
            await asyncio.wait([ready, task], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what stopped the engine
        yield engine
    finally:
        engine.stop()
        await task


def as_role(role: str) -> Callable[[HTTPConnection], Awaitable[None]]:
    """An app-wide dependency for a test app that mounts routers without the engine: every
    request carries `role`, as the engine's token gate sets it (`engine.auth.require_role`)."""

    async def assume(connection: HTTPConnection) -> None:
        connection.state.role = role
        connection.state.token_name = role

    return assume
