"""The journal's tables: message metadata, content, deliveries and attempts."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from engine.database import Base

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class MessageStatus(enum.StrEnum):
    """Where a message is in its channel."""

    RECEIVED = "received"  # journalled, not yet filtered or transformed
    FILTERED = "filtered"  # the channel filter dropped it on purpose
    TRANSFORMED = "transformed"  # transformed; deliveries pending
    QUEUED = "queued"  # a delivery failed transiently and waits for its retry
    SENT = "sent"  # every delivery done
    ERROR = "error"  # unparseable, unmappable, or a delivery rejected: a person must look


class DeliveryStatus(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FILTERED = "filtered"
    ERROR = "error"


class JournalMessage(Base):
    """One received message's metadata; its bytes are in `MessageContent`.

    Status moves several times per message; keeping the bytes in another table means those
    updates rewrite a small row, not kilobytes of content.
    """

    __tablename__ = "journal_message"
    __table_args__ = (
        UniqueConstraint("channel", "dedup_key", name="uq_journal_message_dedup"),
        Index("ix_journal_message_channel_status", "channel", "status", "id"),
        Index("ix_journal_message_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None]
    origin: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(100))
    charset: Mapped[str | None] = mapped_column(String(40))
    dedup_key: Mapped[str | None] = mapped_column(String(300))
    correlation_id: Mapped[str | None] = mapped_column(String(200), index=True)
    reprocess_of: Mapped[int | None] = mapped_column(BigId)
    size_bytes: Mapped[int] = mapped_column(Integer)
    transformed_media_type: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    content_pruned: Mapped[bool] = mapped_column(default=False)
    # What the sender's own clock said (Inbound.sent_at) and who the sender is: the samples
    # the device clock monitor estimates each sender's clock offset from.
    sent_at: Mapped[datetime | None]
    sender: Mapped[str | None] = mapped_column(String(200))

    deliveries: Mapped[list[DestinationDelivery]] = relationship(
        back_populates="message", lazy="raise", order_by="DestinationDelivery.id"
    )


class ContentKind(enum.StrEnum):
    RAW = "raw"  # exactly what arrived; the unit of reprocessing
    TRANSFORMED = "transformed"  # what the channel's mapping made of it


class MessageContent(Base):
    """The bytes of a message: as received, and as transformed. Pruned separately."""

    __tablename__ = "message_content"

    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("journal_message.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    data: Mapped[bytes]


class DestinationDelivery(Base):
    """One message's place in one destination's queue."""

    __tablename__ = "destination_delivery"
    __table_args__ = (
        Index("ix_delivery_queue", "channel", "destination", "status", "lane", "id"),
        Index("ix_delivery_message", "message_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("journal_message.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(64))
    lane: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # Only set when the destination has its own transformer; otherwise the message's is sent.
    payload: Mapped[bytes | None]
    payload_media_type: Mapped[str | None] = mapped_column(String(100))

    message: Mapped[JournalMessage] = relationship(back_populates="deliveries", lazy="raise")
    attempt_rows: Mapped[list[DeliveryAttempt]] = relationship(
        back_populates="delivery", lazy="raise", order_by="DeliveryAttempt.id"
    )


class DeliveryAttempt(Base):
    """One try to deliver: when, the outcome, and what the peer answered."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("destination_delivery.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    outcome: Mapped[str] = mapped_column(String(16))  # sent | retry | rejected
    detail: Mapped[str | None] = mapped_column(Text)
    reply: Mapped[bytes | None]

    delivery: Mapped[DestinationDelivery] = relationship(
        back_populates="attempt_rows", lazy="raise"
    )


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """A journal row without its content, for listings."""

    id: int
    channel: str
    status: str
    received_at: datetime
    origin: str
    media_type: str
    correlation_id: str | None
    size_bytes: int
    error: str | None
