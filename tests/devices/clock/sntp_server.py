"""A small SNTP server for tests (RFC 4330 section 6, NTPv4 packet of RFC 5905): answers each
client request on a real UDP socket on 127.0.0.1, with its clock set `offset_s` away from the
host's, or with one of the faults a real server or network can produce."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Literal, cast

NTP_EPOCH_OFFSET = 2_208_988_800
PACKET = struct.Struct("!BBbbII4sQQQQ")

Fault = Literal["none", "short", "client-mode", "kiss-rate", "not-ours", "unsynchronised", "silent"]


def _ntp(epoch_s: float) -> int:
    seconds = epoch_s + NTP_EPOCH_OFFSET
    return (int(seconds) << 32) | int((seconds % 1) * 2**32)


class SntpServer(asyncio.DatagramProtocol):
    """Answers as a stratum-2 server whose clock reads host time + `offset_s`."""

    def __init__(self, offset_s: float = 0.0, fault: Fault = "none") -> None:
        self.offset_s = offset_s
        self.fault = fault
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        self.requests += 1
        if len(data) < PACKET.size or self.fault == "silent":
            return  # RFC 4330: a server discards what is not a request
        first, *_rest, client_transmit = PACKET.unpack_from(data)
        version, mode = (first >> 3) & 0x7, first & 0x7
        if mode != 3:
            return
        received = time.time() + self.offset_s
        leap, stratum, reference_id, answer_mode = 0, 2, b"\x7f\x00\x00\x01", 4
        if self.fault == "client-mode":
            answer_mode = 3
        if self.fault == "kiss-rate":
            stratum, reference_id = 0, b"RATE"
        if self.fault == "unsynchronised":
            leap = 3
        originate = client_transmit ^ 1 if self.fault == "not-ours" else client_transmit
        transmitted = time.time() + self.offset_s
        reply = PACKET.pack(
            (leap << 6) | (version << 3) | answer_mode, stratum, 6, -20, 0, 0, reference_id,
            _ntp(received - 10), originate, _ntp(received), _ntp(transmitted),
        )  # fmt: skip
        if self.fault == "short":
            reply = reply[:40]
        assert self.transport is not None
        self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def sntp_server(
    offset_s: float = 0.0, fault: Fault = "none"
) -> AsyncIterator[tuple[SntpServer, int]]:
    """Run the server on a free UDP port of 127.0.0.1; yields it and its port."""
    loop = asyncio.get_running_loop()
    server = SntpServer(offset_s, fault)
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    try:
        yield server, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


@contextlib.contextmanager
def sntp_server_thread(
    offset_s: float = 0.0, fault: Fault = "none"
) -> Iterator[tuple[SntpServer, int]]:
    """The same server in a thread of its own, for tests that run the engine as a process."""
    ready: queue.Queue[tuple[SntpServer, int]] = queue.Queue()
    stop = threading.Event()

    async def serve() -> None:
        async with sntp_server(offset_s, fault) as running:
            ready.put(running)
            while not stop.is_set():  # noqa: ASYNC110
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        yield ready.get(timeout=10)
    finally:
        stop.set()
        thread.join(10)
