"""An SNTP client (RFC 4330, NTPv4 packet of RFC 5905): the engine host's own clock offset.

One request, one answer, checked the way RFC 4330 section 5 asks: the answer is a 48-byte
server-mode packet that echoes our transmit timestamp, from a synchronised server (leap
indicator not 3, stratum 1-15) with a non-zero transmit timestamp. A stratum-0 answer is a
kiss-o'-death (RATE, DENY, RSTR...): the server tells us to go away, and we say so.

Written here rather than taken from ntplib because ntplib checks none of this (it returns any
48 bytes as a result), and the whole client is one datagram and four timestamps.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import GreenchannelError

__all__ = [
    "KissOfDeathError",
    "NtpError",
    "NtpResponseError",
    "NtpTimeoutError",
    "NtpResult",
    "query_ntp",
]

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
PACKET = struct.Struct("!BBbbII4sQQQQ")  # RFC 5905 figure 8, without extensions
MODE_CLIENT, MODE_SERVER = 3, 4
VERSION = 4
LEAP_ALARM = 3  # leap indicator 3: the server's clock is not synchronised


class NtpError(GreenchannelError):
    """The NTP server could not tell the time: the host's offset stays as last measured."""

    hint = "check `clocks.ntp_server` in config/greenchannel.yaml and that UDP 123 is open"


class NtpTimeoutError(NtpError):
    """No answer within the timeout."""


class NtpResponseError(NtpError):
    """An answer that is not a valid NTP server reply (short, wrong mode, not ours, unsynced)."""


class KissOfDeathError(NtpError):
    """The server answered with stratum 0 and a kiss code: it refuses to serve us."""

    hint = "the server refuses this client (kiss code); ask its operator or use another server"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class NtpResult:
    """One exchange: `offset_s` is what to add to the host clock to get the server's time."""

    server: str
    offset_s: float
    delay_s: float  # round trip, less the server's own processing time
    stratum: int
    checked_at: float  # host time (epoch seconds) when the answer arrived


async def query_ntp(
    server: str,
    *,
    port: int = 123,
    timeout_s: float = 2.0,
    clock: Callable[[], float] = time.time,
) -> NtpResult:
    """Ask `server` for the time once; raises an `NtpError` naming what went wrong."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[tuple[bytes, float]] = loop.create_future()

    class _Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
            if not answer.done():
                answer.set_result((data, clock()))

        def error_received(self, exc: Exception) -> None:
            if not answer.done():
                answer.set_exception(exc)

    where = f"{server}:{port}"
    try:
        transport, _ = await loop.create_datagram_endpoint(_Protocol, remote_addr=(server, port))
    except OSError as exc:
        raise NtpError(f"cannot reach NTP server {where} ({exc.strerror or exc})") from exc
    try:
        # The transmit timestamp we send comes back as the originate timestamp; its low bits
        # are random, so a stray or forged answer cannot match it by chance (RFC 4330 sec. 5).
        sent = clock()
        transmit = _to_ntp(sent) ^ int.from_bytes(os.urandom(2), "big")
        transport.sendto(_request(transmit))
        try:
            async with asyncio.timeout(timeout_s):
                data, arrived = await answer
        except TimeoutError:
            raise NtpTimeoutError(f"no answer from NTP server {where} in {timeout_s:g} s") from None
        except OSError as exc:
            raise NtpError(f"NTP server {where} unreachable ({exc.strerror or exc})") from exc
    finally:
        transport.close()
    return _result(where, data, transmit, sent, arrived)


def _request(transmit: int) -> bytes:
    return PACKET.pack((0 << 6) | (VERSION << 3) | MODE_CLIENT, 0, 0, 0, 0, 0, b"\0" * 4,
                       0, 0, 0, transmit)  # fmt: skip


def _result(where: str, data: bytes, transmit: int, sent: float, arrived: float) -> NtpResult:
    if len(data) < PACKET.size:
        raise NtpResponseError(
            f"NTP server {where} answered {len(data)} bytes; an NTP packet has at least 48"
        )
    (first, stratum, _poll, _precision, _root_delay, _root_dispersion, reference_id,
     _reference, originate, receive, transmitted) = PACKET.unpack_from(data)  # fmt: skip
    leap, mode = first >> 6, first & 0x7
    if mode != MODE_SERVER:
        raise NtpResponseError(
            f"NTP server {where} answered in mode {mode}; a server reply is mode 4"
        )
    if originate != transmit:
        raise NtpResponseError(
            f"the answer from {where} does not echo our request (originate timestamp); "
            "a stray or forged packet"
        )
    if stratum == 0:
        code = reference_id.rstrip(b"\0").decode("ascii", "replace")
        raise KissOfDeathError(f"NTP server {where} sent kiss-o'-death {code!r}", code=code)
    if leap == LEAP_ALARM or stratum > 15:
        raise NtpResponseError(
            f"NTP server {where} is not synchronised itself (leap {leap}, stratum {stratum})"
        )
    if transmitted == 0:
        raise NtpResponseError(f"NTP server {where} sent no transmit timestamp")
    t1, t4 = sent, arrived
    t2, t3 = _from_ntp(receive), _from_ntp(transmitted)
    return NtpResult(
        server=where,
        offset_s=((t2 - t1) + (t3 - t4)) / 2,
        delay_s=max(0.0, (t4 - t1) - (t3 - t2)),
        stratum=stratum,
        checked_at=arrived,
    )


def _to_ntp(epoch_s: float) -> int:
    seconds = epoch_s + NTP_EPOCH_OFFSET
    return (int(seconds) << 32) | int((seconds % 1) * 2**32)


def _from_ntp(value: int) -> float:
    return (value >> 32) - NTP_EPOCH_OFFSET + (value & 0xFFFFFFFF) / 2**32
