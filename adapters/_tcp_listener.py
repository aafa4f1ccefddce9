"""The TCP listener the socket sources share (MLLP, POCT1-A, ASTM): bind (TLS if asked), one task
per connection with a connection limit, journal through `accept` with a deadline, close every
connection on shutdown. A source implements `converse` for one connection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import traceback
from abc import ABC, abstractmethod
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from engine.connectors import Accept, ConnectorContext, Inbound, Receipt
from engine.errors import ConfigError, InputError

__all__ = ["ListenerConfig", "ListenerSettings", "TcpListener", "close_writer", "peer_origin"]

log = logging.getLogger(__name__)


class ListenerSettings(Protocol):
    """What a listener needs from its source's config (every socket source's config has it)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def max_connections(self) -> int: ...
    @property
    def accept_timeout_s(self) -> float: ...


class ListenerConfig(BaseModel):
    """The fields every device source's config shares (the `kind` comes with each source)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="0.0.0.0", description="Address to listen on; 0.0.0.0 for all.")
    port: int = Field(ge=0, le=65535, description="TCP port to listen on (0: any free port).")
    max_connections: int = Field(default=50, gt=0, description="Connections served at once.")
    accept_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Time allowed for the journal to commit one message; past it the device is "
        "not acknowledged (POCT: no ACK.R01; ASTM: the last frame is NAKed) and resends.",
    )


def peer_origin(scheme: str, peer: object) -> str:
    """`scheme://host:port` of the peer; never patient data."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"{scheme}://[{host}]:{port}" if ":" in str(host) else f"{scheme}://{host}:{port}"
    return f"{scheme}://unknown"


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(5):
            await writer.wait_closed()


class TcpListener(ABC):
    """Listens on host:port; subclasses implement `converse` for one connection."""

    scheme = "tcp"

    def __init__(self, settings: ListenerSettings, context: ConnectorContext) -> None:
        self._context = context
        self._host = settings.host
        self._port = settings.port
        self._max_connections = settings.max_connections
        self._accept_timeout_s = settings.accept_timeout_s
        self._server: asyncio.Server | None = None
        self._accept: Accept | None = None
        self._ready = asyncio.Event()
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful with port 0); only after start()."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the source is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind the listening socket; ConfigError naming host:port when that fails."""
        if self._server is not None:
            return
        context = await self.ssl_context()
        try:
            self._server = await asyncio.start_server(
                self._connection, self._host, self._port, ssl=context
            )
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}",
                key="source.port",
                hint="choose a free port or stop the process holding it",
            ) from exc
        log.info(f"{self.scheme}.source.listening", extra={"port": self.port})

    async def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context; None for plain TCP."""
        return None

    async def serve(self, accept: Accept) -> None:
        """Serve connections until cancelled, journalling through `accept`."""
        await self.start()
        assert self._server is not None
        self._accept = accept
        self._ready.set()
        try:
            await self._server.serve_forever()
        finally:
            await self._close_connections()

    async def aclose(self) -> None:
        """Stop listening and close every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self._close_connections()
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await server.wait_closed()

    async def _close_connections(self) -> None:
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        origin = peer_origin(self.scheme, writer.get_extra_info("peername"))
        if len(self._connections) >= self._max_connections:
            log.warning(f"{self.scheme}.connection.refused", extra={"origin": origin})
            await close_writer(writer)
            return
        self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        log.debug(f"{self.scheme}.connection.opened", extra={"origin": origin})
        try:
            await self.converse(reader, writer, origin)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The connection boundary: only this connection ends. Payloads never reach the log
            # (exception texts from lower layers may quote them), so: type and stack only.
            log.error(
                f"{self.scheme}.connection.failed",
                extra={
                    "origin": origin,
                    "error": type(exc).__name__,
                    "stack": "".join(traceback.format_tb(exc.__traceback__)),
                },
            )
        finally:
            self._connections.discard(task)
            await close_writer(writer)
            log.debug(f"{self.scheme}.connection.closed", extra={"origin": origin})

    @abstractmethod
    async def converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, origin: str
    ) -> None:
        """Speak the device protocol on one connection until it ends."""

    async def journal(
        self,
        raw: bytes,
        media_type: str,
        origin: str,
        *,
        dedup_key: str | None = None,
        correlation_id: str | None = None,
        problem: InputError | None = None,
        sent_at: datetime | None = None,
        sender: str | None = None,
    ) -> Receipt | None:
        """Journal one input; None when the journal did not commit within the deadline.
        `sent_at` is the device's own stamp on the message and `sender` the device, for the
        clock monitor (devices.clock)."""
        inbound = Inbound(
            raw=raw,
            media_type=media_type,
            received_at=datetime.now(tz=self._context.timezone),
            origin=origin,
            dedup_key=dedup_key if problem is None else None,
            charset=self._context.default_charset,
            correlation_id=correlation_id,
            problem=problem,
            sent_at=sent_at,
            sender=sender,
        )
        try:
            async with asyncio.timeout(self._accept_timeout_s):
                await self._ready.wait()
                assert self._accept is not None
                receipt = await self._accept(inbound)
        except TimeoutError:
            log.warning(f"{self.scheme}.accept.timeout", extra={"origin": origin})
            return None
        if problem is not None:
            log.info(
                f"{self.scheme}.input.rejected",
                extra={
                    "message_id": receipt.message_id,
                    "location": problem.location,
                    "error": type(problem).__name__,
                },
            )
        return receipt
