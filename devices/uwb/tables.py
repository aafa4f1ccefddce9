"""The UWB tables: registered tags (wristbands and staff badges) with their last fix and zone
tracker state, and the wristband bindings to a patient's encounter. Created by the
`greenchannel.migrations: uwb` entry point (`devices.uwb.schema.migrate`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.database import AwareDateTime

__all__ = ["Binding", "Stay", "Tag", "metadata"]


class Base(DeclarativeBase):
    """Own metadata, apart from the engine's, so each Alembic history sees only its tables;
    instants are aware, as in the engine's tables."""

    type_annotation_map = {datetime: AwareDateTime()}


class Tag(Base):
    __tablename__ = "uwb_tag"

    tag_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # wristband | badge
    practitioner_id: Mapped[str | None] = mapped_column(String(64))  # a badge's wearer
    label: Mapped[str | None] = mapped_column(String(200))
    registered_at: Mapped[datetime]
    last_heard_at: Mapped[datetime | None]  # any fix, even one dropped as unsure
    state: Mapped[str | None] = mapped_column(Text)  # TagState JSON of the zone tracker


class Binding(Base):
    __tablename__ = "uwb_binding"
    __table_args__ = (
        Index("ix_uwb_binding_tag_open", "tag_id", "unbound_at"),
        Index("ix_uwb_binding_encounter", "encounter_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tag_id: Mapped[str] = mapped_column(ForeignKey("uwb_tag.tag_id"))
    patient_id: Mapped[str] = mapped_column(String(64))
    encounter_id: Mapped[str] = mapped_column(String(64))
    bound_at: Mapped[datetime]
    unbound_at: Mapped[datetime | None]
    unbind_reason: Mapped[str | None] = mapped_column(String(32))  # manual | discharge
    returned_at: Mapped[datetime | None]


class Stay(Base):
    """A zone stay written into an Encounter's location history, kept here too so that it can
    be written again when an HIS update replaces the Encounter's locations."""

    __tablename__ = "uwb_stay"
    __table_args__ = (
        UniqueConstraint("encounter_id", "zone", "started_at", name="uq_uwb_stay"),
        Index("ix_uwb_stay_encounter", "encounter_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    encounter_id: Mapped[str] = mapped_column(String(64))
    tag_id: Mapped[str] = mapped_column(String(64))
    zone: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]


metadata = Base.metadata
