"""The registry upload workflow's own tables: one state row per case and registry, the staff's
field overrides (append-only) and the upload log (append-only, one row per attempt).

They have their own declarative base and Alembic history (`registry_alembic_version`), so they
share the engine's database without touching the engine's or the FHIR store's migrations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.database import AwareDateTime

__all__ = ["Base", "CaseState", "FieldOverride", "UploadAttempt"]


class Base(DeclarativeBase):
    """Declarative base of the registry workflow's tables: datetimes are aware."""

    type_annotation_map: dict[Any, Any] = {datetime: AwareDateTime()}


class CaseState(Base):
    """Where one case stands with one registry: its upload state, the platform's record id and
    what the last check or attempt found."""

    __tablename__ = "registry_case_state"
    __table_args__ = (UniqueConstraint("case_id", "registry", name="uq_registry_case_state"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(64))
    # "registry" is reserved on declarative classes: the attribute is `target`, the column not.
    target: Mapped[str] = mapped_column("registry", String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    register_id: Mapped[str | None] = mapped_column(String(64))
    # sha256 of the record as last built (overrides applied, before REGISTER_ID and HOSPITAL_ID)
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    # ... and of the record the platform last accepted: a rebuilt record that differs is an update
    accepted_hash: Mapped[str | None] = mapped_column(String(64))
    spec_version: Mapped[str | None] = mapped_column(String(32))
    mapping_version: Mapped[str | None] = mapped_column(String(32))
    # JSON list of {"block", "field", "message"}: local validation problems or platform reasons
    problems: Mapped[str | None] = mapped_column(Text)
    problem_kind: Mapped[str | None] = mapped_column(String(16))  # validation, signature, clock...
    message_id: Mapped[int | None] = mapped_column(Integer)  # the journal message of the upload
    uploads: Mapped[int] = mapped_column(Integer, default=0)  # messages queued so far
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # attempts of the current upload
    next_attempt_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    case_month: Mapped[str | None] = mapped_column(String(7), index=True)  # YYYY-MM of the door
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(100))


class FieldOverride(Base):
    """One override entered by registry staff: a field's value (JSON; `cleared` withdraws the
    override), with the reason, who and when. Rows are never updated or deleted: the latest row
    per field is the one in force, the earlier ones are the audit trail."""

    __tablename__ = "registry_override"
    __table_args__ = (Index("ix_registry_override_case", "case_id", "registry", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column("registry", String(32))
    field: Mapped[str] = mapped_column(String(120))  # "Block.FIELD", e.g. FirstAIDInfo.ATTACK_TIME
    value: Mapped[str | None] = mapped_column(Text)  # JSON
    cleared: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text)
    entered_by: Mapped[str] = mapped_column(String(100))
    entered_at: Mapped[datetime]


class UploadAttempt(Base):
    """One attempt to send one case's record to a registry (or a local refusal): append-only."""

    __tablename__ = "registry_upload_log"
    __table_args__ = (Index("ix_registry_upload_log_case", "case_id", "registry", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column("registry", String(32))
    spec_version: Mapped[str | None] = mapped_column(String(32))
    mapping_version: Mapped[str | None] = mapped_column(String(32))
    message_id: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str | None] = mapped_column(String(64))
    payload_hash: Mapped[str | None] = mapped_column(String(64))
    request_body: Mapped[str | None] = mapped_column(Text)
    http_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))  # accepted, rejected, retry, dead_letter
    detail: Mapped[str | None] = mapped_column(Text)
    register_id: Mapped[str | None] = mapped_column(String(64))
    triggered_by: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
