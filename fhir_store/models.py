"""The FHIR store's tables: current resources, every version, and the token search index.

The design follows HAPI FHIR's relational one: a resource table with the current version, a
version table with each version's content (for vread and history), and per-type index tables
that search reads. The store has its own declarative base, independent of the engine's tables.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "AwareDateTime",
    "Base",
    "ChangeCursorRow",
    "ChangeRow",
    "ChangeSequenceRow",
    "DateIndexRow",
    "NumberIndexRow",
    "QuantityIndexRow",
    "ReferenceIndexRow",
    "ResourceRow",
    "ResourceVersionRow",
    "StringIndexRow",
    "TokenIndexRow",
    "UriIndexRow",
]


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
    __table_args__ = (Index("ix_fhir_resource_key", "key", unique=True),)

    resource_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    last_updated: Mapped[datetime]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # The resource JSON as served, meta.versionId and meta.lastUpdated included; NULL if deleted.
    content: Mapped[str | None] = mapped_column(Text)
    # A number given to the resource when it is created, one more than the last (f0006). The
    # index tables find a resource's rows by it: its index then grows at one end, where the
    # (type, id) pair, random for most ids, put each new resource's rows on a page of their own.
    key: Mapped[int | None] = mapped_column(BigInteger)


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
    # An earlier version's content. None for a deletion, and for the current version, whose
    # content is the resource row's: kept once, it is filled in here when a newer one comes.
    content: Mapped[str | None] = mapped_column(Text)


class TokenIndexRow(Base):
    """One token search value of a current resource: (system, code) of a token parameter."""

    __tablename__ = "fhir_token_index"
    __table_args__ = (
        ForeignKeyConstraint(
            ["resource_type", "resource_id"],
            ["fhir_resource.resource_type", "fhir_resource.id"],
            ondelete="CASCADE",
        ),
        Index("ix_fhir_token_lookup", "resource_type", "param", "value", "system"),
        Index("ix_fhir_token_resource", "resource_key"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_key: Mapped[int | None] = mapped_column(BigInteger)  # the resource's `key`
    param: Mapped[str] = mapped_column(String(64))
    system: Mapped[str | None] = mapped_column(String)
    value: Mapped[str] = mapped_column(String)


def _index_args(table: str, *lookup: str) -> tuple[Any, ...]:
    """A search index table's foreign key to its resource and its two indexes: by value, and
    by the resource's `key` (the rows to replace when the resource changes)."""
    return (
        ForeignKeyConstraint(
            ["resource_type", "resource_id"],
            ["fhir_resource.resource_type", "fhir_resource.id"],
            ondelete="CASCADE",
        ),
        Index(f"ix_{table}_lookup", "resource_type", "param", *lookup),
        Index(f"ix_{table}_resource", "resource_key"),
    )


class StringIndexRow(Base):
    """One string search value: accent-folded lower case (`normal`) and as written (`exact`)."""

    __tablename__ = "fhir_string_index"
    __table_args__ = _index_args("fhir_string", "normal")

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_key: Mapped[int | None] = mapped_column(BigInteger)  # the resource's `key`
    param: Mapped[str] = mapped_column(String(64))
    normal: Mapped[str] = mapped_column(String(200))
    exact: Mapped[str] = mapped_column(String(200))


class ReferenceIndexRow(Base):
    """One reference search value: the target's type and id."""

    __tablename__ = "fhir_reference_index"
    __table_args__ = _index_args("fhir_reference", "target_id", "target_type")

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_key: Mapped[int | None] = mapped_column(BigInteger)  # the resource's `key`
    param: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(64))
    target_id: Mapped[str] = mapped_column(String(64))


class DateIndexRow(Base):
    """One date search value: the UTC instants [low, high) it stands for at its precision."""

    __tablename__ = "fhir_date_index"
    # The resource index holds param, low and high too: a date condition is checked for each
    # candidate resource (EXISTS, `_search`) from the index alone (f0005).
    __table_args__ = (
        *_index_args("fhir_date", "low", "high")[:2],
        Index("ix_fhir_date_resource", "resource_key", "param", "low", "high"),
    )

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_key: Mapped[int | None] = mapped_column(BigInteger)  # the resource's `key`
    param: Mapped[str] = mapped_column(String(64))
    low: Mapped[datetime]
    high: Mapped[datetime]


class NumberIndexRow(Base):
    """One number search value."""

    __tablename__ = "fhir_number_index"
    __table_args__ = _index_args("fhir_number", "value")

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_key: Mapped[int | None] = mapped_column(BigInteger)  # the resource's `key`
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class QuantityIndexRow(Base):
    """One quantity search value: number, unit system and code (or unit text)."""

    __tablename__ = "fhir_quantity_index"
    __table_args__ = _index_args("fhir_quantity", "value")

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_key: Mapped[int | None] = mapped_column(BigInteger)  # the resource's `key`
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    system: Mapped[str | None] = mapped_column(String)
    code: Mapped[str | None] = mapped_column(String)


class UriIndexRow(Base):
    """One uri search value."""

    __tablename__ = "fhir_uri_index"
    __table_args__ = _index_args("fhir_uri", "value")

    pk: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    resource_key: Mapped[int | None] = mapped_column(BigInteger)  # the resource's `key`
    param: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String)


class ChangeRow(Base):
    """One committed change of a resource, in the order of the global change sequence."""

    __tablename__ = "fhir_change"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str] = mapped_column(String(64))
    version_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(8))  # create, update or delete


class ChangeSequenceRow(Base):
    """The one row holding the last change sequence number given out; its row lock orders
    the writers' commits (see `fhir_store.events`)."""

    __tablename__ = "fhir_change_sequence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class ChangeCursorRow(Base):
    """How far one named change-event subscriber has processed the change log."""

    __tablename__ = "fhir_change_cursor"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]
