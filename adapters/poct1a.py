"""POCT1-A2 source: the data manager's side of the device conversation over TCP.

The device connects and says hello (HEL.R01, naming itself), reports its status (DST.R01, with
how many new observations it holds); the data manager ACKs each (ACK.R01 with ACK.ack_control_id
= the device's HDR.control_id), asks for observations (REQ.R01, ROBS) and the device sends them
(OBS.R01 patient, OBS.R02 non-patient/QC), each ACKed after the journal has committed it, until it
ends the topic (EOT.R01, topic OBS); the data manager then ends the conversation (END.R01).

Each observation message is journalled as the device's HEL.R01 followed by the OBS message,
both exactly as received, so the journalled input names its device and can be reprocessed
alone. Unparseable, unsafe (DTD, entities) or garbage input is journalled as an error and
answered ACK.R01 AE with ACK.note_txt saying why. Registered as the `poct1a` source and the
`application/x-poct1a+xml` parser.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from datetime import datetime, tzinfo
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from adapters._tcp_listener import ListenerConfig, TcpListener
from adapters.jsoninput import JsonDocument
from devices.poct import (
    MEDIA_TYPE,
    MessageSplitter,
    PoctMessage,
    build_ack,
    build_message,
    parse_message,
    results_document,
)
from engine.connectors import ConnectorContext
from engine.errors import InputError

__all__ = ["Poct1aSource", "Poct1aSourceConfig", "Poct1aSourceFactory", "parse_for_mapping"]

log = logging.getLogger(__name__)

_CHUNK_BYTES = 64 * 1024
_OBSERVATIONS = ("OBS.R01", "OBS.R02")


class Poct1aSourceConfig(ListenerConfig):
    """Receive POCT1-A2 device conversations (XML over TCP)."""

    kind: Literal["poct1a"] = Field(description="Receive CLSI POCT1-A2 XML from POC devices.")
    idle_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Close a connection after this long without a message (POCT1-A2's "
        "application timeout; devices reconnect for their next conversation).",
    )
    read_timeout_s: float = Field(
        default=30.0, gt=0, description="Time allowed for a started message to arrive in full."
    )
    max_message_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest XML message accepted."
    )
    request_observations: bool = Field(
        default=True,
        description="After a DST.R01 reporting new observations, ask for them (REQ.R01 ROBS).",
    )


class Poct1aSource(TcpListener):
    """One conversation per connection."""

    scheme = "poct1a"

    def __init__(self, config: Poct1aSourceConfig, context: ConnectorContext) -> None:
        super().__init__(config, context)
        self._config = config

    async def converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, origin: str
    ) -> None:
        conversation = _Conversation(self, writer, origin)
        splitter = MessageSplitter(max_bytes=self._config.max_message_bytes)
        while not conversation.ended:
            timeout_s = (
                self._config.read_timeout_s if splitter.pending else self._config.idle_timeout_s
            )
            try:
                async with asyncio.timeout(timeout_s):
                    data = await reader.read(_CHUNK_BYTES)
            except TimeoutError:
                if not splitter.pending:
                    log.info("poct1a.connection.idle", extra={"origin": origin})
                    return
                data = b""
                why = f"no more bytes within {self._config.read_timeout_s} s"
            else:
                why = "the connection closed"
            if not data:
                rest = splitter.finish(why)
                if rest is not None:
                    await conversation.reject(rest.content, rest.problem)
                return
            for piece in splitter.feed(data):
                if piece.problem is not None:
                    await conversation.reject(piece.content, piece.problem)
                elif not await conversation.handle(piece.content):
                    return


class _Conversation:
    """The data manager's state on one connection: the device's hello, our control ids."""

    def __init__(self, source: Poct1aSource, writer: asyncio.StreamWriter, origin: str) -> None:
        self.source = source
        self.writer = writer
        self.origin = origin
        self.hello = b""  # the device's HEL.R01 as received: journalled with each OBS
        self.device_id = ""
        self.control_ids = itertools.count(1)
        self.ended = False

    def now(self) -> datetime:
        return datetime.now(tz=self.source._context.timezone)

    async def handle(self, raw: bytes) -> bool:
        """Answer one message; False when the connection should close."""
        try:
            message = parse_message(raw)
        except InputError as exc:
            await self.reject(raw, exc)
            return True
        kind = message.message_type
        if kind in _OBSERVATIONS:
            return await self.observations(raw, message)
        if kind == "HEL.R01":
            device = message.device()
            self.hello, self.device_id = raw, device.device_id if device else ""
            await self.ack(message)
        elif kind == "DST.R01":
            await self.ack(message)
            waiting = message.value("DST/DST.new_observations_qty")
            if self.source._config.request_observations and waiting not in ("0",):
                await self.send(
                    build_message(
                        "REQ.R01", next(self.control_ids), self.now(), "REQ",
                        (("REQ.request_cd", "ROBS"),),
                    )
                )  # fmt: skip
        elif kind == "EOT.R01":
            await self.ack(message)
            if message.topic in ("OBS", ""):
                await self.send(
                    build_message(
                        "END.R01", next(self.control_ids), self.now(), "END",
                        (("END.reason_cd", "NRM"),),
                    )
                )  # fmt: skip
        elif kind == "END.R01":
            self.ended = True
            return False
        elif kind == "ACK.R01":
            pass  # the device acknowledging our REQ/END: nothing to answer
        else:
            await self.ack(message)  # KPA, DTV answers, vendor topics: acknowledged, not stored
        return True

    async def observations(self, raw: bytes, message: PoctMessage) -> bool:
        problem: InputError | None = None
        dedup_key = sender = None
        sent_at = None
        journalled = self.hello + raw
        try:
            document = results_document(journalled)
            device = document["device"].get("id", "")
            dedup_key = f"poct1a:{device}:{document['digest']}"
            # HDR.creation_dttm, the device's clock when it made the message (devices.clock)
            sent_at = iso_instant(document.get("sent", ""), self.source._context.timezone)
            sender = device or None
        except InputError as exc:
            problem = exc
        receipt = await self.source.journal(
            journalled,
            MEDIA_TYPE,
            self.origin,
            dedup_key=dedup_key,
            correlation_id=message.control_id,
            problem=problem,
            sent_at=sent_at,
            sender=sender,
        )
        if receipt is None:
            return False  # no ACK: the device resends; the digest keeps it from applying twice
        error = ""
        if problem is not None:
            error = f"journal row {receipt.message_id}: {problem.location}: {problem.reason}"
        await self.ack(message, error=error)
        return True

    async def reject(self, raw: bytes, problem: InputError | None) -> None:
        """Journal input that is no usable message and say so to the device."""
        receipt = await self.source.journal(raw, MEDIA_TYPE, self.origin, problem=problem)
        reason = f"{problem.location}: {problem.reason}" if problem else "unreadable"
        row = f"journal row {receipt.message_id}: " if receipt is not None else ""
        await self.send(build_ack(next(self.control_ids), self.now(), "", error=row + reason))

    async def ack(self, message: PoctMessage, *, error: str = "") -> None:
        await self.send(
            build_ack(next(self.control_ids), self.now(), message.control_id, error=error)
        )

    async def send(self, content: bytes) -> None:
        self.writer.write(content)
        async with asyncio.timeout(30):
            await self.writer.drain()


def iso_instant(text: str, zone: tzinfo) -> datetime | None:
    """A POCT1-A timestamp (ISO 8601, `zone` when it has no offset) to the second, or None when
    it is not one: the device's clock is looked at, the message is not judged by it."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=zone)
    return instant.replace(microsecond=0)


class Poct1aSourceFactory:
    """Registered as the `poct1a` source."""

    config_model: ClassVar[type[BaseModel]] = Poct1aSourceConfig

    def build(self, config: Poct1aSourceConfig, context: ConnectorContext) -> Poct1aSource:
        return Poct1aSource(config, context)


def parse_for_mapping(raw: bytes, charset: str) -> JsonDocument:
    """Registered under `greenchannel.parsers` for application/x-poct1a+xml: the journalled
    HEL.R01 + OBS message as the analyser-results document that mappings/devices/poct.yaml reads."""
    return JsonDocument(results_document(raw), media_type=MEDIA_TYPE)
