"""Socket helpers the tests share: a free local port, one raw MLLP exchange, an ASGI app on
uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import uvicorn

__all__ = ["free_port", "mllp_exchange", "serve_app"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, for a server a test starts.

    Not one the kernel picks (`bind(0)`): those come from the ephemeral range, which is also
    where every outgoing connection of every test worker gets its local port, and one of them
    could take it between this check and the server's bind ("address already in use", seen
    in the e2e tests). Ports below that range are handed out in turn from a slice per xdist
    worker, so two workers never pick the same one and a worker not twice in a row.
    """
    for _ in range(_SLICE):
        port = _SLICE_START + next(_next_port) % _SLICE
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # in use, or lingering after a test server closed it
            return port
    raise RuntimeError(f"no free port in {_SLICE_START}-{_SLICE_START + _SLICE - 1}")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


_WORKERS = 8  # slices: more than the xdist workers the suite runs with
_SLICE = (_ephemeral_start() - 10_000) // _WORKERS
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % _WORKERS
_SLICE_START = 10_000 + _WORKER * _SLICE
_next_port = itertools.count(random.randrange(_SLICE))  # runs of the suite start elsewhere


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
async def serve_app(app: Any, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port; yields its base URL.

    Idle connections are kept for 300 s, not uvicorn's 5: the server runs in the test's event
    loop, which stands still between a module's tests, and on a slow machine a pause over 5 s
    let the overdue keep-alive timeout close the client's pooled connection in the same loop
    turn as the client's next request used it (httpx.ReadError)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan,
        timeout_keep_alive=300,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):  # uvicorn has no started event; give it 5 s at most
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
