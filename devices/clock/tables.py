"""The clock monitor's tables: each source's clock state, the journal cursor, the host's NTP.

Kept apart from the engine's and the FHIR store's tables, with their own Alembic history
(`clock_alembic_version`), migrated through the `greenchannel.migrations` entry point.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.database import AwareDateTime

__all__ = ["ClockBase", "ClockCursor", "ClockHost", "ClockSource"]


class ClockBase(DeclarativeBase):
    """Base of the clock tables: datetimes are aware (stored in UTC)."""

    type_annotation_map = {datetime: AwareDateTime()}


class ClockSource(ClockBase):
    """One sender's clock: its buckets of samples, the estimate made from them, the alert."""

    __tablename__ = "clock_source"

    source_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str | None] = mapped_column(String(200))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]  # receipt of the newest sample, in true time
    samples: Mapped[int] = mapped_column(Integer)
    offset_s: Mapped[float | None] = mapped_column(Float)
    drift_ppm: Mapped[float | None] = mapped_column(Float)
    uncertainty_s: Mapped[float] = mapped_column(Float)
    estimated_at: Mapped[datetime | None]  # the receipt time the offset is for
    status: Mapped[str] = mapped_column(String(16))  # ok | drifting | unknown
    alerting: Mapped[bool]
    crossings: Mapped[int] = mapped_column(Integer)  # alerts raised so far
    alert_journalled: Mapped[str | None] = mapped_column(String(400))  # last alert key sent
    buckets: Mapped[str] = mapped_column(Text)  # JSON: [[start, at, best_offset_s, samples]]


class ClockCursor(ClockBase):
    """How far the monitor has read the journal."""

    __tablename__ = "clock_cursor"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[int] = mapped_column(BigInteger)


class ClockHost(ClockBase):
    """An engine host's own clock against the NTP server, as last checked."""

    __tablename__ = "clock_host"

    node: Mapped[str] = mapped_column(String(200), primary_key=True)
    server: Mapped[str | None] = mapped_column(String(300))
    offset_s: Mapped[float | None] = mapped_column(Float)
    delay_s: Mapped[float | None] = mapped_column(Float)
    stratum: Mapped[int | None] = mapped_column(Integer)
    checked_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
