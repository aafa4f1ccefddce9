"""The FHIR store's tables: current resources, every version, and the token search index.

The design follows HAPI FHIR's relational one: a resource table with the current version, a
version table with each version's content (for vread and history), and per-type index tables
that search reads. The store has its own declarative base, independent of the engine's tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Dialect,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["AwareDateTime", "Base", "ResourceRow", "ResourceVersionRow", "TokenIndexRow"]


class AwareDateTime(TypeDecorator[datetime]):
    """An aware datetime: timestamptz on PostgreSQL; UTC text on SQLite, read back as aware UTC.

    Naive datetimes are refused: on a clinical timeline a time without an offset is a bug.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("AwareDateTime refuses a naive datetime; attach a time zone")
        if dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base of the FHIR store's tables (separate from the engine's)."""

    type_annotation_map: dict[Any, Any] = {datetime: AwareDateTime}


class ResourceRow(Base):
    """The current version of one resource, or a tombstone if it was deleted."""

    __tablename__ = "fhir_resource"

    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The resource JSON as served, meta.versionId and meta.lastUpdated included; NULL if deleted.
    content: Mapped[str | None] = mapped_column(Text)


class ResourceVersionRow(Base):
    """One version of a resource, kept for vread and history; deletes are versions too."""

    __tablename__ = "fhir_resource_version"
    __table_args__ = (
        ForeignKeyConstraint(
            ["resource_type", "resource_id"],
            ["fhir_resource.resource_type", "fhir_resource.id"],
            ondelete="CASCADE",
        ),
    )

    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_updated: Mapped[datetime]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(8))  # POST, PUT or DELETE
    content: Mapped[str | None] = mapped_column(Text)


class TokenIndexRow(Base):
    """One token search value of a current resource (for now: `identifier` system|value)."""

    __tablename__ = "fhir_token_index"
    __table_args__ = (
        ForeignKeyConstraint(
            ["resource_type", "resource_id"],
            ["fhir_resource.resource_type", "fhir_resource.id"],
            ondelete="CASCADE",
        ),
        Index("ix_fhir_token_lookup", "resource_type", "param", "value", "system"),
        Index("ix_fhir_token_resource", "resource_type", "resource_id"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String)
    value: Mapped[str] = mapped_column(String)
