"""The registry upload workflow: case state, staff overrides and the upload log.

Revision ID: r0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.database import AwareDateTime

revision: str = "r0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create registry_case_state, registry_override and registry_upload_log."""
    op.create_table(
        "registry_case_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("registry", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("register_id", sa.String(64)),
        sa.Column("payload_hash", sa.String(64)),
        sa.Column("accepted_hash", sa.String(64)),
        sa.Column("spec_version", sa.String(32)),
        sa.Column("mapping_version", sa.String(32)),
        sa.Column("problems", sa.Text),
        sa.Column("problem_kind", sa.String(16)),
        sa.Column("message_id", sa.Integer),
        sa.Column("uploads", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", AwareDateTime()),
        sa.Column("accepted_at", AwareDateTime()),
        sa.Column("case_month", sa.String(7)),
        sa.Column("updated_at", AwareDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.UniqueConstraint("case_id", "registry", name="uq_registry_case_state"),
    )
    op.create_index("ix_registry_case_state_state", "registry_case_state", ["state"])
    op.create_index("ix_registry_case_state_case_month", "registry_case_state", ["case_month"])
    op.create_table(
        "registry_override",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("registry", sa.String(32), nullable=False),
        sa.Column("field", sa.String(120), nullable=False),
        sa.Column("value", sa.Text),
        sa.Column("cleared", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("entered_by", sa.String(100), nullable=False),
        sa.Column("entered_at", AwareDateTime(), nullable=False),
    )
    op.create_index("ix_registry_override_case", "registry_override", ["case_id", "registry", "id"])
    op.create_table(
        "registry_upload_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(64), nullable=False),
        sa.Column("registry", sa.String(32), nullable=False),
        sa.Column("spec_version", sa.String(32)),
        sa.Column("mapping_version", sa.String(32)),
        sa.Column("message_id", sa.Integer),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(64)),
        sa.Column("payload_hash", sa.String(64)),
        sa.Column("request_body", sa.Text),
        sa.Column("http_status", sa.Integer),
        sa.Column("response_body", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("register_id", sa.String(64)),
        sa.Column("triggered_by", sa.String(100), nullable=False),
        sa.Column("started_at", AwareDateTime(), nullable=False),
        sa.Column("finished_at", AwareDateTime(), nullable=False),
    )
    op.create_index(
        "ix_registry_upload_log_case", "registry_upload_log", ["case_id", "registry", "id"]
    )


def downgrade() -> None:
    """Drop the registry workflow's tables."""
    op.drop_table("registry_upload_log")
    op.drop_table("registry_override")
    op.drop_table("registry_case_state")
