"""Socket helpers the tests share: a free local port, one raw MLLP exchange."""

from __future__ import annotations

import socket

__all__ = ["free_port", "mllp_exchange"]


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
