"""Zone stays per encounter, to write them again after an HIS update replaced them.

Revision ID: u0002
Revises: u0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from engine.database import AwareDateTime

revision: str = "u0002"
down_revision: str | None = "u0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create uwb_stay."""
    op.create_table(
        "uwb_stay",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("encounter_id", sa.String(64), nullable=False),
        sa.Column("tag_id", sa.String(64), nullable=False),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("started_at", AwareDateTime(), nullable=False),
        sa.Column("ended_at", AwareDateTime(), nullable=True),
        sa.UniqueConstraint("encounter_id", "zone", "started_at", name="uq_uwb_stay"),
    )
    op.create_index("ix_uwb_stay_encounter", "uwb_stay", ["encounter_id"])


def downgrade() -> None:
    """Drop it."""
    op.drop_table("uwb_stay")
