"""The TCP listener the device sources share (POCT1-A, ASTM): bind, one task per connection,
journal through `accept` with a deadline, close everything on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import traceback
from abc import ABC, abstractmethod
from datetime import datetime

from engine.connectors import Accept, ConnectorContext, Inbound, Receipt
from engine.errors import ConfigError, InputError

__all__ = ["DeviceListener", "close_writer", "peer_origin"]

log = logging.getLogger(__name__)


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


class DeviceListener(ABC):
    """Listens on host:port; subclasses implement `converse` for one connection."""

    scheme = "tcp"

    def __init__(
        self,
        context: ConnectorContext,
        *,
        host: str,
        port: int,
        max_connections: int,
        accept_timeout_s: float,
    ) -> None:
        self._context = context
        self._host = host
        self._port = port
        self._max_connections = max_connections
        self._accept_timeout_s = accept_timeout_s
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
        try:
            self._server = await asyncio.start_server(self._connection, self._host, self._port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self._host}:{self._port}: {exc.strerror or exc}",
                key="source.port",
                hint="choose a free port or stop the process holding it",
            ) from exc
        log.info(f"{self.scheme}.source.listening", extra={"port": self.port})

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
        try:
            await self.converse(reader, writer, origin)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Only this connection ends; exception texts may quote payloads: type and stack only.
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
    ) -> Receipt | None:
        """Journal one input; None when the journal did not commit within the deadline."""
        inbound = Inbound(
            raw=raw,
            media_type=media_type,
            received_at=datetime.now(tz=self._context.timezone),
            origin=origin,
            dedup_key=dedup_key if problem is None else None,
            charset=self._context.default_charset,
            correlation_id=correlation_id,
            problem=problem,
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
