"""Socket helpers the tests share: a free local port, one raw MLLP exchange, an ASGI app
served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn

__all__ = ["free_port", "mllp_exchange", "serve_app"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mllp_exchange(port: int, message: bytes) -> bytes:
    """One MLLP exchange on 127.0.0.1: the framed message out, the framed ACK back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\x0b" + message + b"\x1c\r")
        reply = b""
        while not reply.endswith(b"\x1c\r"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


@contextlib.asynccontextmanager
async def serve_app(app: Any, path: str = "") -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on `app` (base URL + `path`), served by uvicorn on a free 127.0.0.1 port."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):  # uvicorn has no started event; give it 5 s at most
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}{path}") as http:
            yield http
    finally:
        server.should_exit = True
        await task
