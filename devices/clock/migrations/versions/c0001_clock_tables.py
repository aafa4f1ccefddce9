"""device clock tables: sources, journal cursor, host NTP

Revision ID: c0001
Revises:

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "clock_source",
        sa.Column("source_id", sa.String(length=300), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=200), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("offset_s", sa.Float(), nullable=True),
        sa.Column("drift_ppm", sa.Float(), nullable=True),
        sa.Column("uncertainty_s", sa.Float(), nullable=False),
        sa.Column("estimated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("alerting", sa.Boolean(), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.Column("alert_journalled", sa.String(length=400), nullable=True),
        sa.Column("buckets", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source_id"),
    )
    op.create_table(
        "clock_cursor",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "clock_host",
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("server", sa.String(length=300), nullable=True),
        sa.Column("offset_s", sa.Float(), nullable=True),
        sa.Column("delay_s", sa.Float(), nullable=True),
        sa.Column("stratum", sa.Integer(), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("node"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("clock_host")
    op.drop_table("clock_cursor")
    op.drop_table("clock_source")
