"""UWB tags and wristband bindings.

Revision ID: u0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.database import AwareDateTime

revision: str = "u0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the tag and binding tables."""
    op.create_table(
        "uwb_tag",
        sa.Column("tag_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("practitioner_id", sa.String(64), nullable=True),
        sa.Column("label", sa.String(200), nullable=True),
        sa.Column("registered_at", AwareDateTime(), nullable=False),
        sa.Column("last_heard_at", AwareDateTime(), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
    )
    op.create_table(
        "uwb_binding",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tag_id", sa.String(64), sa.ForeignKey("uwb_tag.tag_id"), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("encounter_id", sa.String(64), nullable=False),
        sa.Column("bound_at", AwareDateTime(), nullable=False),
        sa.Column("unbound_at", AwareDateTime(), nullable=True),
        sa.Column("unbind_reason", sa.String(32), nullable=True),
        sa.Column("returned_at", AwareDateTime(), nullable=True),
    )
    op.create_index("ix_uwb_binding_tag_open", "uwb_binding", ["tag_id", "unbound_at"])
    op.create_index("ix_uwb_binding_encounter", "uwb_binding", ["encounter_id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("uwb_binding")
    op.drop_table("uwb_tag")
