"""The interfaces between the engine and every protocol adapter: sources, destinations, parsers.

The engine depends on this module only, never on a protocol. Adapters implement these shapes and
register factories through the entry points `greenchannel.sources`, `greenchannel.destinations`
and `greenchannel.parsers`, so a hospital can ship its own connector as a separate package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from engine.errors import DeliveryError, InputError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from engine.mapping.document import Document

__all__ = [
    "Accept",
    "AttemptRecorder",
    "ConnectorContext",
    "Delivered",
    "Destination",
    "DestinationFactory",
    "Inbound",
    "Outbound",
    "OutputAdjuster",
    "OutputAdjusterFactory",
    "Parser",
    "Receipt",
    "Source",
    "SourceFactory",
]

CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as it arrived, before anything else happens to it."""

    raw: bytes  # exactly what arrived; journalled before anything else
    media_type: str  # "x-application/hl7-v2+er7", "application/fhir+json", ...
    received_at: datetime  # always aware
    origin: str  # "mllp://10.2.0.14:51022"; never patient data
    dedup_key: str | None = None  # e.g. MSH-4 + MSH-10, worked out by the adapter
    charset: str | None = None  # the charset the adapter decoded with (MSH-18 or the default)
    correlation_id: str | None = None  # the sender's control id (MSH-10), for search and ACKs
    problem: InputError | None = None  # the adapter could not frame, decode or parse it
    # The time the sender stamped on the message by its own clock (MSH-7, a device record's
    # timestamp), aware; with `sender` it lets the clock monitor estimate the sender's offset.
    sent_at: datetime | None = None
    sender: str | None = None  # which system or device stamped it ("MSH-3/MSH-4"); no patient data

    def __repr__(self) -> str:
        # Never show the payload: it holds patient data.
        return (
            f"Inbound(origin={self.origin!r}, media_type={self.media_type!r}, "
            f"bytes={len(self.raw)}, "
            f"problem={type(self.problem).__name__ if self.problem else None})"
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the journal answers: the committed row, and whether it was a resend."""

    message_id: int  # journal row, already committed
    duplicate: bool  # seen before: acknowledge again, apply once


Accept = Callable[[Inbound], Awaitable[Receipt]]


class Source(Protocol):
    """Receives messages from the outside world and answers the sender."""

    async def start(self) -> None:
        """Open the listening socket (or directory); raise ConfigError if that is impossible
        (port in use, directory missing). Returns once the source is ready to receive."""
        ...

    async def serve(self, accept: Accept) -> None:
        """Receive until cancelled; await accept() per message, then answer the sender.

        `accept` returns only after the journal commit, so an ACK sent after it is durable. The
        engine passes a stable `accept` and re-routes behind it on redeploy, so a source keeps
        its socket and its connections open across redeploys.
        """
        ...

    async def aclose(self) -> None:
        """Stop listening and close every connection."""
        ...


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message handed to a destination."""

    message_id: int
    channel: str
    destination: str
    payload: bytes
    media_type: str
    attempt: int  # 1 for the first try
    # What the journal knows of the inbound message this payload was made from (its
    # `Inbound.received_at`, `.sent_at`, `.sender`), for output adjusters.
    received_at: datetime | None = None
    sent_at: datetime | None = None
    sender: str | None = None

    def __repr__(self) -> str:
        return (
            f"Outbound(message_id={self.message_id}, destination={self.destination!r}, "
            f"bytes={len(self.payload)}, attempt={self.attempt})"
        )


@dataclass(frozen=True, slots=True)
class Delivered:
    """The peer's answer to a successful delivery, journalled with the attempt."""

    reply: bytes | None = None
    detail: str = ""


@dataclass(slots=True)
class AttemptRecorder:
    """Lets a destination that writes to the engine's own database (through
    `ConnectorContext.run_write`) commit the record of its delivery attempts in the same
    transaction as the delivery itself: one commit per batch instead of two.

    Such a destination has `records_attempts = True` and a `send_many(outbounds, recorder)`
    that calls `recorder.record(connection, results)` inside its write transaction, with one
    result per outbound in order, and sets `committed` once that transaction has committed.
    When `committed` stays False, the engine records the attempts itself.
    """

    record: Callable[[Any, list[Delivered | DeliveryError]], None]
    committed: bool = False


class Destination(Protocol):
    """Delivers messages to one outside system."""

    async def send(self, outbound: Outbound) -> Delivered:
        """Deliver one message or raise RetryableDeliveryError / RejectedDeliveryError."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the engine hands a connector factory: where it runs and what it may use."""

    channel: str
    data_dir: Path
    database: AsyncEngine
    default_charset: str = "utf-8"
    timezone: timezone = CHINA_STANDARD_TIME
    # Checks an HTTP `Authorization` header value; every HTTP endpoint must pass it.
    authorize: Callable[[str | None], Awaitable[bool]] | None = None
    # Runs `work(connection)` as one write transaction on the engine's write thread (a
    # synchronous SQLAlchemy Connection) and returns its result. Connectors that write to the
    # engine's own database use it, so that on SQLite writes queue instead of fighting for the
    # lock; the journal's commits, which senders wait for, still go first.
    run_write: Callable[[Callable[[Any], Any]], Awaitable[Any]] | None = None
    # For a destination: the output checks (`greenchannel.output_checks` callables) that every
    # payload it is given has already passed in the processing worker, so it need not repeat
    # them; empty when its payloads are unchecked (no mapping, or `check_output: false`).
    checked_by: tuple[Callable[[Any], list[str]], ...] = ()
    # For a destination: the output adjusters (`greenchannel.output_adjusters`) that apply to
    # this channel, in name order; a destination that parses its payloads before writing them
    # (the FHIR store) hands each parsed payload to every one of them first.
    adjusters: tuple[OutputAdjuster, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class OutputAdjuster(Protocol):
    """Changes a mapped output just before a destination writes it, from what is known of the
    inbound message it was made from (who sent it, when, when it arrived) and of the world at
    delivery time, e.g. device clock corrections. The engine knows no more of it than this."""

    async def adjust(self, document: Any, outbound: Outbound) -> None:
        """Change `document` (the payload as the destination parsed it, e.g. a JSON object) in
        place; leave alone what is not for this adjuster. Must not raise for a document it does
        not understand: a destination's own checks judge the payload."""
        ...


class OutputAdjusterFactory(Protocol):
    """Registered under `greenchannel.output_adjusters`: the adjuster for one channel's
    destinations, or None when it has nothing to do on that channel (then it costs nothing)."""

    def build(self, context: ConnectorContext) -> OutputAdjuster | None: ...


class SourceFactory(Protocol):
    """Registered under `greenchannel.sources`: validates a config block and builds a Source."""

    config_model: ClassVar[type[BaseModel]]

    def build(self, config: Any, context: ConnectorContext) -> Source: ...


class DestinationFactory(Protocol):
    """Registered under `greenchannel.destinations`: validates a config and builds a Destination."""

    config_model: ClassVar[type[BaseModel]]

    def build(self, config: Any, context: ConnectorContext) -> Destination: ...


# Registered under `greenchannel.parsers`, keyed by media type: turns raw bytes into a Document
# the mapping language can read, or raises InputError naming where and why.
Parser = Callable[[bytes, str], "Document"]
