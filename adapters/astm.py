"""ASTM E1381/E1394 source: laboratory and point-of-care analysers over TCP (or a serial line
behind a serial-to-TCP converter), journalled one E1394 message (H ... L) at a time.

The receiver side of E1381: ENQ is answered ACK; each frame is checked (checksum, frame number
1..7,0 cycling, terminators) and answered ACK, or NAK so the analyser retransmits it; a frame
repeated after a lost ACK is ACKed and dropped; the frame that completes a message (its L record)
is ACKed only after the journal has committed it. EOT ends the transfer. Timers per E1381 §6.5:
30 s for the next frame, else the partial message is journalled as truncated and the link goes
back to neutral. Registered as the `astm` source and `application/x-astm-e1394` parser.
"""

from __future__ import annotations

import asyncio
import logging
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from adapters._tcp_listener import ListenerConfig, TcpListener
from adapters.hl7v2 import stamp_time
from adapters.jsoninput import JsonDocument
from devices.astm import (
    ACK,
    CR,
    ENQ,
    EOT,
    LF,
    MEDIA_TYPE,
    NAK,
    STX,
    FrameError,
    parse_frame,
    parse_message,
    results_document,
)
from engine.connectors import ConnectorContext
from engine.errors import FramingError, InputError

__all__ = ["AstmSource", "AstmSourceConfig", "AstmSourceFactory", "parse_for_mapping"]

log = logging.getLogger(__name__)

_MAX_FRAME_BYTES = 1024
_MAX_GARBAGE_BYTES = 64 * 1024
# Bytes a link in neutral state may carry without meaning anything: line ends, padding, and a
# stray EOT/ACK/NAK from a sender finishing or retrying a transfer we already closed.
_NEUTRAL_NOISE = b"\r\n\x00 " + EOT + ACK + NAK


class AstmSourceConfig(ListenerConfig):
    """Receive ASTM E1381 frames carrying E1394 messages over TCP."""

    kind: Literal["astm"] = Field(description="Receive ASTM E1381/E1394 from analysers (TCP).")
    frame_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="E1381 receiver timer: time allowed for the next frame (or EOT) once a "
        "transfer has started; past it the partial message is journalled as truncated.",
    )
    idle_timeout_s: float = Field(
        default=3600.0, gt=0, description="Close a connection after this long without any byte."
    )
    max_message_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="Largest E1394 message accepted."
    )
    max_retries: int = Field(
        default=6,
        ge=1,
        description="NAKs of one frame after which the transfer is abandoned (E1381 lets the "
        "sender try six times).",
    )


class AstmSource(TcpListener):
    """One E1381 receiver per connection."""

    scheme = "astm"

    def __init__(self, config: AstmSourceConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._config = config

    async def converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, origin: str
    ) -> None:
        link = _Link(self, reader, writer, origin)
        await link.run()


class _Link:
    """The receiver's state on one connection: neutral, or in a transfer (after ENQ)."""

    def __init__(
        self,
        source: AstmSource,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        origin: str,
    ) -> None:
        self.source = source
        self.config = source._config
        self.reader = reader
        self.writer = writer
        self.origin = origin
        self.garbage = bytearray()
        self.text = bytearray()  # the message being assembled: frame texts, records ended by CR
        self.last_number = 0  # the first frame of a transfer is number 1
        self.nak_count = 0
        self.pushback = b""  # an STX read while a cut-off frame was being read

    async def read1(self) -> bytes:
        if self.pushback:
            byte, self.pushback = self.pushback, b""
            return byte
        return await self.reader.read(1)

    async def run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.config.idle_timeout_s):
                    byte = await self.read1()
            except TimeoutError:
                break
            if not byte:
                break
            if byte == ENQ:
                await self.flush_garbage("before an ENQ")
                await self.send(ACK)
                if not await self.transfer():
                    break
            elif byte not in _NEUTRAL_NOISE or self.garbage:
                self.garbage += byte
                if len(self.garbage) >= _MAX_GARBAGE_BYTES:
                    await self.flush_garbage("outside a transfer")
        await self.flush_garbage("outside a transfer")

    async def transfer(self) -> bool:
        """Receive frames until EOT; False when the connection ended."""
        self.last_number = 0
        self.nak_count = 0
        while True:
            try:
                async with asyncio.timeout(self.config.frame_timeout_s):
                    byte = await self.read1()
            except TimeoutError:
                await self.abandon(
                    f"no frame within the E1381 receiver timeout ({self.config.frame_timeout_s} s)"
                )
                return True
            if not byte:
                await self.abandon("the connection closed during a transfer")
                return False
            if byte == EOT:
                if self.text.strip():
                    await self.abandon("the analyser ended the transfer (EOT) before the L record")
                return True
            if byte == ENQ:  # a sender that restarts: answer as to a new transfer
                await self.send(ACK)
                continue
            if byte != STX:
                continue  # E1381: the receiver ignores everything but STX and EOT here
            frame = await self.read_frame()
            if frame is None:
                await self.abandon("the connection closed in the middle of a frame")
                return False
            if not await self.receive(frame):
                return True

    async def read_frame(self) -> bytes | None:
        data = bytearray(STX)
        try:
            async with asyncio.timeout(self.config.frame_timeout_s):
                while not data.endswith(CR + LF) and len(data) < _MAX_FRAME_BYTES:
                    chunk = await self.reader.read(1)
                    if not chunk:
                        return None
                    data += chunk
                    if chunk == STX:  # a new frame started: this one was cut off
                        del data[-1:]
                        self.pushback = STX
                        break
        except TimeoutError:
            return bytes(data)  # checked below: reported as truncated, NAKed
        return bytes(data)

    async def receive(self, data: bytes) -> bool:
        """Check, ACK or NAK one frame; False when the transfer is abandoned."""
        expected = (self.last_number + 1) % 8
        try:
            frame = parse_frame(data)
            if frame.number == self.last_number and self.last_number != 0:
                await self.send(ACK)  # our ACK was lost and the frame resent: take it once
                return True
            if frame.number != expected:
                raise FrameError(
                    f"frame number {frame.number} where {expected} was expected",
                    location="frame byte 1",
                )
        except FrameError as exc:
            self.nak_count += 1
            log.warning(
                "astm.frame.nak",
                extra={"origin": self.origin, "reason": exc.reason, "attempt": self.nak_count},
            )
            await self.send(NAK)
            if self.nak_count >= self.config.max_retries:
                await self.abandon(f"frame NAKed {self.nak_count} times, last: {exc.reason}")
                return False
            return True
        self.nak_count = 0
        self.text += frame.text
        if len(self.text) > self.config.max_message_bytes:
            await self.abandon(
                f"the message exceeds max_message_bytes ({self.config.max_message_bytes})"
            )
            await self.send(NAK)
            return False
        if frame.final and _ends_with_terminator(self.text):
            message, self.text = bytes(self.text), bytearray()
            if not await self.journal_message(message, None):
                await self.send(NAK)  # not journalled in time: the analyser resends the frame
                return True
        self.last_number = frame.number
        await self.send(ACK)
        return True

    async def journal_message(self, message: bytes, problem: InputError | None) -> bool:
        charset = self.source._context.default_charset
        dedup_key = correlation = sender = None
        sent_at = None
        if problem is None:
            try:
                parsed = parse_message(message, charset)
                document = results_document(parsed, message)
                device = document["device"].get("id", "")
                dedup_key = f"astm:{device}:{document['digest']}"
                correlation = document.get("control_id")
                # H-14, the analyser's clock when it sent the message (devices.clock)
                sent_at = stamp_time(document.get("sent", ""), self.source._context.timezone)
                sender = device or None
            except InputError as exc:
                problem = exc
        receipt = await self.source.journal(
            message,
            MEDIA_TYPE,
            self.origin,
            dedup_key=dedup_key,
            correlation_id=correlation,
            problem=problem,
            sent_at=sent_at,
            sender=sender,
        )
        return receipt is not None

    async def abandon(self, why: str) -> None:
        """Journal what arrived of an incomplete message as truncated and forget it."""
        if self.text.strip():
            message, self.text = bytes(self.text), bytearray()
            await self.journal_message(
                message, FramingError(f"{why} (truncated message)", location="ASTM transfer")
            )
        self.text = bytearray()

    async def flush_garbage(self, where: str) -> None:
        if not self.garbage.strip():
            self.garbage.clear()
            return
        junk, self.garbage = bytes(self.garbage), bytearray()
        await self.source.journal(
            junk,
            MEDIA_TYPE,
            self.origin,
            problem=FramingError(
                f"{len(junk)} bytes {where} that are not E1381 control characters or frames",
                location="ASTM link",
            ),
        )

    async def send(self, control: bytes) -> None:
        self.writer.write(control)
        async with asyncio.timeout(15):
            await self.writer.drain()


def _ends_with_terminator(text: bytearray) -> bool:
    """The assembled text's last complete record is the L (terminator) record."""
    if not text.endswith(CR):
        return False
    last = bytes(text[:-1].rsplit(CR, 1)[-1])
    return last[:1] in (b"L", b"l")


class AstmSourceFactory:
    """Registered as the `astm` source."""

    config_model: ClassVar[type[BaseModel]] = AstmSourceConfig

    def build(self, config: AstmSourceConfig, context: ConnectorContext) -> AstmSource:
        return AstmSource(config, context)


def parse_for_mapping(raw: bytes, charset: str) -> JsonDocument:
    """Registered under `greenchannel.parsers` for application/x-astm-e1394: the message as the
    analyser-results document (docs/poct.md) that mappings/devices/astm.yaml reads."""
    message = parse_message(raw, charset or "latin-1")
    return JsonDocument(results_document(message, raw), media_type=MEDIA_TYPE)
