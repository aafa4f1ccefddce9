"""The change log: every committed create, update and delete in one global order, and the
cursors of the subscribers that read it (`fhir_store.events`).

Resources written before this revision have no change rows: the log starts empty.

Revision ID: f0003
Revises: f0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fhir_store.models import AwareDateTime

revision: str = "f0003"
down_revision: str | None = "f0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create fhir_change, fhir_change_sequence (with its one row) and fhir_change_cursor."""
    op.create_table(
        "fhir_change",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
    )
    sequence = op.create_table(
        "fhir_change_sequence",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(sequence, [{"id": 1, "last_seq": 0}])
    op.create_table(
        "fhir_change_cursor",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("updated_at", AwareDateTime(), nullable=False),
    )


def downgrade() -> None:
    """Drop the change log tables."""
    op.drop_table("fhir_change_cursor")
    op.drop_table("fhir_change_sequence")
    op.drop_table("fhir_change")
