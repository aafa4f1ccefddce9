"""MLLP source and destination: HL7 v2 over TCP, framed as <SB> message <EB><CR>.

Layered like python-hl7: `FrameReader` reads byte blocks; the source reads only the MSH and
checks the charset on its hot path, hands the raw block to the engine's journal through
`accept`, and answers with an ACK built by `adapters.hl7v2` once the journal has committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapters._parse_check import parse_problem, warm_up_parser
from adapters._tcp_listener import TcpListener, close_writer
from adapters.hl7v2 import (
    MEDIA_TYPE,
    MessageHeader,
    ack_wanted,
    batch_ack,
    build_ack,
    channel_codec,
    charset_codec,
    check_structure,
    decode,
    dedup_key,
    is_batch,
    message_time,
    parse_ack,
    read_header,
    sender_of,
    split_batch,
)
from engine.connectors import (
    ConnectorContext,
    Delivered,
    Inbound,
    Outbound,
)
from engine.errors import (
    ConfigError,
    DecodeError,
    FramingError,
    InputError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)

__all__ = [
    "Frame",
    "FrameReader",
    "MllpDestination",
    "MllpDestinationConfig",
    "MllpDestinationFactory",
    "MllpSource",
    "MllpSourceConfig",
    "MllpSourceFactory",
    "TlsClientConfig",
    "TlsServerConfig",
    "frame",
]

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
_CHUNK_BYTES = 64 * 1024
_BLANK = b"\r\n \t"


def frame(content: bytes) -> bytes:
    """Wrap one message in an MLLP block."""
    return START_BLOCK + content + END_BLOCK + CARRIAGE_RETURN


# --- the byte-block layer -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    """One block's content (without <SB>/<EB><CR>), or what arrived of it and why it is bad."""

    content: bytes
    problem: FramingError | None = None
    complete: bool = True  # the block ended with <EB>, so the peer can be answered

    def __repr__(self) -> str:
        return f"Frame(bytes={len(self.content)}, complete={self.complete}, problem={self.problem})"


class FrameReader:
    """Reads MLLP blocks from a stream with a size limit and deadlines.

    Waiting for a block to start is bounded by `idle_timeout_s` (TimeoutError); once it has
    started, the whole block must arrive within `read_timeout_s`. Blank bytes between blocks
    are ignored; other bytes before <SB> are skipped, and bytes ended by <EB> without any <SB>
    come back as a problem frame ("no MLLP start block") so the sender can be told."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_bytes: int,
        idle_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self._reader = reader
        self._max_bytes = max_bytes
        self._idle_timeout_s = idle_timeout_s
        self._read_timeout_s = read_timeout_s
        self._buffer = bytearray()

    async def read_frame(self) -> Frame | None:
        """The next block; None at a clean end of stream. Raises TimeoutError when idle."""
        buffer = self._buffer
        while True:
            junk_end = _skip_blank(buffer)
            start = buffer.find(START_BLOCK)
            end = buffer.find(END_BLOCK, 0, start if start >= 0 else len(buffer))
            if end >= 0:
                # A block ended before any start block: answerable, but not a message.
                content = bytes(buffer[: min(end, self._max_bytes)])
                self._consume(end + 1)
                return Frame(content, _no_start_block(), complete=True)
            if start >= 0:
                if start:
                    log.debug("mllp.frame.skipped", extra={"bytes": start})
                    del buffer[:start]
                return await self._read_block()
            if junk_end > self._max_bytes:
                content = bytes(buffer[: self._max_bytes])
                buffer.clear()
                return Frame(content, _no_start_block(), complete=False)
            timeout_s = self._idle_timeout_s if not buffer else self._read_timeout_s
            try:
                async with asyncio.timeout(timeout_s):
                    more = await self._reader.read(_CHUNK_BYTES)
            except TimeoutError:
                if not buffer:
                    raise
                more = b""
            if not more:
                if not buffer:
                    return None
                content = bytes(buffer)
                buffer.clear()
                return Frame(content, _no_start_block(), complete=False)
            buffer += more

    async def _read_block(self) -> Frame:
        """The buffer starts with <SB>: read up to <EB> within the read deadline."""
        buffer = self._buffer
        scanned = 1
        try:
            async with asyncio.timeout(self._read_timeout_s):
                while len(buffer) - 1 <= self._max_bytes:
                    end = buffer.find(END_BLOCK, scanned)
                    if end >= 0:
                        content = bytes(buffer[1:end])
                        self._consume(end + 1)
                        if len(content) > self._max_bytes:
                            return Frame(content[: self._max_bytes], self._oversized())
                        return Frame(content)
                    scanned = len(buffer)
                    more = await self._reader.read(_CHUNK_BYTES)
                    if not more:
                        return self._partial(f"the connection closed after {len(buffer) - 1} bytes")
                    buffer += more
        except TimeoutError:
            return self._partial(f"the block was not completed within {self._read_timeout_s} s")
        # Oversized: keep the first max_bytes for the journal, drop the rest of the block.
        content = bytes(buffer[1 : 1 + self._max_bytes])
        del buffer[: 1 + self._max_bytes]
        complete = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._read_timeout_s):
                complete = await self._discard_through_end_block()
        return Frame(content, self._oversized(), complete=complete)

    async def _discard_through_end_block(self) -> bool:
        """Drop bytes up to and including <EB>; False when the stream ends first."""
        while True:
            end = self._buffer.find(END_BLOCK)
            if end >= 0:
                self._consume(end + 1)
                return True
            self._buffer.clear()
            more = await self._reader.read(_CHUNK_BYTES)
            if not more:
                return False
            self._buffer += more

    def _partial(self, why: str) -> Frame:
        content = bytes(self._buffer[1 : 1 + self._max_bytes])
        self._buffer.clear()
        problem = FramingError(f"{why}, before the end block (truncated)", location="MLLP")
        return Frame(content, problem, complete=False)

    def _oversized(self) -> FramingError:
        return FramingError(
            f"the block exceeds max_message_bytes ({self._max_bytes} bytes); only the first "
            f"{self._max_bytes} bytes are journalled (truncated)",
            location="MLLP",
        )

    def _consume(self, end: int) -> None:
        """Drop the buffer through `end` (just past <EB>) and a <CR> right after it."""
        if self._buffer[end : end + 1] == CARRIAGE_RETURN:
            end += 1
        del self._buffer[:end]


def _skip_blank(buffer: bytearray) -> int:
    """Drop blank bytes at the front of the buffer; return its remaining length."""
    blank = len(buffer) - len(buffer.lstrip(_BLANK))
    if blank:
        del buffer[:blank]
    return len(buffer)


def _no_start_block() -> FramingError:
    return FramingError("no MLLP start block (0x0B) before the data", location="MLLP")


# --- the source ---------------------------------------------------------------------------------


class TlsServerConfig(BaseModel):
    """TLS for an MLLP listener; with `ca_file`, clients must present a certificate."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: Path = Field(description="PEM certificate chain the listener presents.")
    key_file: Path = Field(description="PEM private key of that certificate.")
    ca_file: Path | None = Field(
        default=None, description="PEM CA bundle; when set, client certificates are required."
    )


class MllpSourceConfig(BaseModel):
    """An MLLP listener: HL7 v2 messages in, ACKs out after the journal commit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mllp"] = Field(description="Receive HL7 v2 over MLLP (TCP).")
    host: str = Field(default="0.0.0.0", description="Address to listen on; 0.0.0.0 for all.")
    port: int = Field(ge=0, le=65535, description="TCP port to listen on (0: any free port).")
    max_message_bytes: int = Field(
        default=4 * 1024 * 1024,
        gt=0,
        description="Largest block accepted; a larger one is answered AR and its first "
        "max_message_bytes are journalled as an error.",
    )
    idle_timeout_s: float = Field(
        default=300.0, gt=0, description="Close a connection after this long without a message."
    )
    read_timeout_s: float = Field(
        default=60.0, gt=0, description="Time allowed for a started block to arrive in full."
    )
    write_timeout_s: float = Field(default=30.0, gt=0, description="Time allowed to send one ACK.")
    accept_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Time allowed for the journal to commit one message; past it the connection "
        "closes without an ACK and the sender resends.",
    )
    max_connections: int = Field(
        default=100, gt=0, description="Connections served at once; more are closed on arrival."
    )
    tls: TlsServerConfig | None = Field(default=None, description="Serve MLLP over TLS.")
    strict: bool = Field(
        default=False,
        description="Check each message against the structure and datatypes of its HL7 version "
        "(MSH-12) with hl7apy; a problem is journalled as an error and answered AE with ERR-2 "
        "naming the segment and field. Off by default: real senders deviate in ways the "
        "mappings tolerate.",
    )
    media_type: str = Field(
        default=MEDIA_TYPE,
        description="Media type the messages are journalled with, which picks the parser: "
        "x-application/hl7-v2+er7, or x-application/hl7-v2+er7+ecg for ORUs that carry an ECG "
        "recording in an ED OBX (read and analysed by the ECG parser).",
    )
    parse_check: bool = Field(
        default=False,
        description="Parse each message with the parser of media_type before answering: a "
        "message it refuses (no ECG in any OBX, an unreadable or implausible recording) is "
        "journalled as an error and answered AR with ERR-2 naming where. Off by default: it "
        "parses every message twice.",
    )
    ack_mode: Literal["auto", "never"] = Field(
        default="auto",
        description="auto: answer after the journal commit, as MSH-15 asks (AL, NE, ER, SU); "
        "never: send no ACKs at all.",
    )


class MllpSource(TcpListener):
    """Listens for MLLP connections; one task per connection, messages in order on each."""

    scheme = "mllp"

    def __init__(self, config: MllpSourceConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._config = config

    async def start(self) -> None:
        await super().start()
        if self._config.parse_check:
            warm_up_parser(self._config.media_type)

    async def ssl_context(self) -> ssl.SSLContext | None:
        """TLS when the channel asks for it (`source.tls`)."""
        if self._config.tls is None:
            return None
        return await asyncio.to_thread(_server_ssl_context, self._config.tls)

    async def converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, origin: str
    ) -> None:
        """Read blocks and answer each until the peer closes or stays idle."""
        frames = FrameReader(
            reader,
            max_bytes=self._config.max_message_bytes,
            idle_timeout_s=self._config.idle_timeout_s,
            read_timeout_s=self._config.read_timeout_s,
        )
        while True:
            try:
                block = await frames.read_frame()
            except TimeoutError:
                log.info("mllp.connection.idle", extra={"origin": origin})
                return
            if block is None or not await self._answer(block, origin, writer):
                return

    async def _answer(self, block: Frame, origin: str, writer: asyncio.StreamWriter) -> bool:
        """Journal one block through accept(), then ACK it; False closes the connection."""
        if block.problem is None and is_batch(block.content):
            messages = split_batch(block.content)
            if messages:
                return await self._answer_batch(block, messages, origin, writer)
        journalled = await self._journal(block, origin)
        if journalled is None or not block.complete:
            return False
        ack, codec, _ = journalled
        if ack is not None:
            await self._write(writer, ack.encode(codec, "replace"))
        return True

    # --- batches (FHS/BHS ... BTS/FTS in one block): each message journalled and ACKed --------

    async def _answer_batch(
        self, block: Frame, messages: list[bytes], origin: str, writer: asyncio.StreamWriter
    ) -> bool:
        """Journal each message of a batch in order, then answer with one batch ACK holding
        their ACKs. A journal timeout closes without answer: the sender resends the batch and
        the journal's MSH-10 dedup keeps the messages already taken from applying twice."""
        acks: list[str] = []
        codec, first_id = "utf-8", ""
        for index, message in enumerate(messages):
            journalled = await self._journal(Frame(message), origin)
            if journalled is None:
                return False
            ack, message_codec, message_id = journalled
            if index == 0:  # the batch answers in its first message's charset
                codec, first_id = message_codec, message_id
            if ack is not None:
                acks.append(ack)
        if self._config.ack_mode == "never":
            return True
        answer = batch_ack(
            block.content,
            acks,
            control_id=first_id,  # the first message's journal id, as the ACKs name theirs
            now=datetime.now(tz=self._context.timezone),
        )
        await self._write(writer, answer.encode(codec, "replace"))
        return True

    # --------------------------------------------------------------------------------------------

    async def _journal(self, block: Frame, origin: str) -> tuple[str | None, str, str] | None:
        """Journal one message through accept(): its ACK (None when none is wanted), the codec
        to send it in and its journal id; None when the journal did not answer in time."""
        config, context = self._config, self._context
        header, problem, codec = _inspect(block, context.default_charset)
        if config.strict and problem is None and header is not None:
            problem = check_structure(block.content, header, codec)
        if config.parse_check and problem is None:
            problem = await parse_problem(block.content, config.media_type, codec)
        inbound = Inbound(
            raw=block.content,
            media_type=config.media_type,
            received_at=datetime.now(tz=context.timezone),
            origin=origin,
            # A resend of a fixed message keeps its MSH-10: errors must not swallow it.
            dedup_key=dedup_key(header) if problem is None else None,
            charset=codec,
            correlation_id=(header.control_id or None) if header is not None else None,
            problem=problem,
            # MSH-7 against the receipt time: the sender's clock offset (devices.clock).
            sent_at=message_time(header, context.timezone),
            sender=sender_of(header),
        )
        try:
            async with asyncio.timeout(config.accept_timeout_s):
                await self._ready.wait()  # a connection may come in before serve() starts
                assert self._accept is not None
                receipt = await self._accept(inbound)
        except TimeoutError:
            log.warning(
                "mllp.accept.timeout",
                extra={"origin": origin, "control_id": inbound.correlation_id},
            )
            return None
        if problem is not None:
            log.info(
                "mllp.message.rejected",
                extra={
                    "message_id": receipt.message_id,
                    "location": problem.location,
                    "error": type(problem).__name__,
                },
            )
        if config.ack_mode == "never" or not ack_wanted(header, accepted=problem is None):
            return None, codec, str(receipt.message_id)
        ack = build_ack(
            header,
            "AA" if problem is None else problem.ack_code,
            error=problem,
            control_id=str(receipt.message_id),  # lets an operator find the row from the ACK
            now=datetime.now(tz=context.timezone),
        )
        return ack, codec, str(receipt.message_id)

    async def _write(self, writer: asyncio.StreamWriter, content: bytes) -> None:
        writer.write(frame(content))
        async with asyncio.timeout(self._config.write_timeout_s):
            await writer.drain()


def _inspect(
    block: Frame, default_charset: str
) -> tuple[MessageHeader | None, InputError | None, str]:
    """The hot path: read the MSH and check the bytes decode; the full parse waits for mapping."""
    problem: InputError | None = block.problem
    header: MessageHeader | None = None
    codec = channel_codec(default_charset) or "utf-8"
    try:
        header = read_header(block.content, default_charset)
        if problem is None:
            _, codec = decode(block.content, header, default_charset)
        else:
            codec = charset_codec(header.charset) or codec
    except DecodeError as exc:
        problem, codec = exc, exc.charset
    except InputError as exc:
        problem = problem or exc
        # A missing MSH-9 or MSH-10 still leaves enough of the MSH to address the NAK.
        with contextlib.suppress(InputError):
            header = read_header(block.content, default_charset, strict=False)
    return header, problem, codec


def _server_ssl_context(tls: TlsServerConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.ca_file is not None:
            context.load_verify_locations(tls.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files: {exc}", key="source.tls") from exc
    return context


class MllpSourceFactory:
    """Registered as the `mllp` source."""

    config_model: ClassVar[type[BaseModel]] = MllpSourceConfig

    def build(self, config: MllpSourceConfig, context: ConnectorContext) -> MllpSource:
        return MllpSource(config, context)


# --- the destination ----------------------------------------------------------------------------


class TlsClientConfig(BaseModel):
    """TLS towards an MLLP receiver."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca_file: Path | None = Field(
        default=None,
        description="PEM CA bundle to verify the receiver; the system store when empty.",
    )
    cert_file: Path | None = Field(default=None, description="PEM client certificate, if required.")
    key_file: Path | None = Field(
        default=None, description="PEM private key of the client certificate."
    )
    server_hostname: str | None = Field(
        default=None,
        description="Name to verify in the receiver's certificate; the host when empty.",
    )


class MllpDestinationConfig(BaseModel):
    """Send HL7 v2 over MLLP and wait for each ACK."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mllp"] = Field(description="Deliver HL7 v2 over MLLP (TCP).")
    host: str = Field(description="Receiver host name or address.")
    port: int = Field(ge=1, le=65535, description="Receiver TCP port.")
    timeout_s: float = Field(
        default=30.0, gt=0, description="Time allowed to send one message and receive its ACK."
    )
    connect_timeout_s: float = Field(default=10.0, gt=0, description="Time allowed to connect.")
    max_ack_bytes: int = Field(default=1024 * 1024, gt=0, description="Largest ACK accepted.")
    retry_on: tuple[Literal["AE", "AR", "CE", "CR"], ...] = Field(
        default=(),
        description="Negative ACK codes to retry instead of sending the message to ERROR, "
        'e.g. ["AE"] for a receiver that answers AE while its database is down.',
    )
    tls: TlsClientConfig | None = Field(default=None, description="Connect over TLS.")


class MllpDestination:
    """One persistent connection, reused across sends and reopened after any failure."""

    def __init__(self, config: MllpDestinationConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._target = f"{config.host}:{config.port}"
        self._lock = asyncio.Lock()
        self._writer: asyncio.StreamWriter | None = None
        self._frames: FrameReader | None = None
        self._reader: asyncio.StreamReader | None = None

    async def send(self, outbound: Outbound) -> Delivered:
        """Deliver one message; AA/CA → Delivered, AE/AR/CE/CR → RejectedDeliveryError (unless
        in retry_on), anything else → RetryableDeliveryError."""
        try:
            header = read_header(outbound.payload)
        except InputError as exc:
            raise RejectedDeliveryError(
                f"the payload is not an HL7 v2 message ({exc})",
                hint="fix the mapping that builds it, then reprocess the message",
            ) from exc
        async with self._lock:
            reply = await self._exchange(outbound.payload)
        try:
            ack = parse_ack(reply)
        except InputError as exc:
            await self._drop()
            raise RetryableDeliveryError(f"{self._target} sent a garbled ACK ({exc})") from exc
        if ack.control_id != header.control_id:
            await self._drop()
            raise RetryableDeliveryError(
                f"{self._target} answered MSA-2 that does not match the sent MSH-10"
            )
        if ack.code in ("AA", "CA"):
            return Delivered(reply=reply, detail=f"MSA-1 {ack.code}")
        detail = f"{self._target} answered {ack.code}"
        if ack.error_location or ack.error_code:
            detail += f" (ERR-2 {ack.error_location or '-'}, ERR-3 {ack.error_code or '-'})"
        if ack.code in self._config.retry_on:
            raise RetryableDeliveryError(detail)
        raise RejectedDeliveryError(detail)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._drop()

    async def _exchange(self, payload: bytes) -> bytes:
        """Send one block and read one back; every failure drops the connection."""
        config = self._config
        try:
            async with asyncio.timeout(config.timeout_s):
                writer, frames = await self._connection()
                writer.write(frame(payload))
                await writer.drain()
                reply = await frames.read_frame()
        except TimeoutError as exc:
            await self._drop()
            raise RetryableDeliveryError(
                f"{self._target} sent no ACK within {config.timeout_s} s"
            ) from exc
        except OSError as exc:
            await self._drop()
            raise RetryableDeliveryError(
                f"{self._target}: {exc.strerror or type(exc).__name__}"
            ) from exc
        if reply is None or reply.problem is not None:
            await self._drop()
            why = "closed the connection" if reply is None else "sent a broken MLLP block"
            raise RetryableDeliveryError(f"{self._target} {why} instead of an ACK")
        return reply.content

    async def _connection(self) -> tuple[asyncio.StreamWriter, FrameReader]:
        reader, writer, frames = self._reader, self._writer, self._frames
        if reader is not None and writer is not None and frames is not None:
            if not reader.at_eof() and not writer.is_closing():
                return writer, frames
            await self._drop()  # the receiver closed it while idle
        config = self._config
        context = None
        if config.tls is not None:
            context = await asyncio.to_thread(_client_ssl_context, config.tls)
        async with asyncio.timeout(config.connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                config.host,
                config.port,
                ssl=context,
                server_hostname=(config.tls.server_hostname or config.host)
                if config.tls is not None
                else None,
            )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frames = FrameReader(
            reader,
            max_bytes=config.max_ack_bytes,
            idle_timeout_s=config.timeout_s,
            read_timeout_s=config.timeout_s,
        )
        self._reader, self._writer, self._frames = reader, writer, frames
        log.debug("mllp.destination.connected", extra={"target": self._target})
        return writer, frames

    async def _drop(self) -> None:
        writer = self._writer
        self._reader = self._writer = self._frames = None
        if writer is not None:
            await close_writer(writer)


def _client_ssl_context(tls: TlsClientConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca_file)
        if tls.cert_file is not None:
            context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files: {exc}", key="destination.tls") from exc
    return context


class MllpDestinationFactory:
    """Registered as the `mllp` destination."""

    config_model: ClassVar[type[BaseModel]] = MllpDestinationConfig

    def build(self, config: MllpDestinationConfig, context: ConnectorContext) -> MllpDestination:
        return MllpDestination(config, context)
