"""Search index tables per parameter type: string, reference, date, number, quantity, uri.

The token table of f0001 becomes the index of every token parameter, not only `identifier`;
resources written before this revision keep their identifier rows until they are next written.

Revision ID: f0002
Revises: f0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fhir_store.models import AwareDateTime

revision: str = "f0002"
down_revision: str | None = "f0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _tables() -> dict[str, tuple[list[sa.Column[object]], tuple[str, ...]]]:
    return {
        "fhir_string_index": (
            [
                sa.Column("normal", sa.String(200), nullable=False),
                sa.Column("exact", sa.String(200), nullable=False),
            ],
            ("normal",),
        ),
        "fhir_reference_index": (
            [
                sa.Column("target_type", sa.String(64), nullable=False),
                sa.Column("target_id", sa.String(64), nullable=False),
            ],
            ("target_id", "target_type"),
        ),
        "fhir_date_index": (
            [
                sa.Column("low", AwareDateTime(), nullable=False),
                sa.Column("high", AwareDateTime(), nullable=False),
            ],
            ("low", "high"),
        ),
        "fhir_number_index": ([sa.Column("value", sa.Float, nullable=False)], ("value",)),
        "fhir_quantity_index": (
            [
                sa.Column("value", sa.Float, nullable=False),
                sa.Column("system", sa.String, nullable=True),
                sa.Column("code", sa.String, nullable=True),
            ],
            ("value",),
        ),
        "fhir_uri_index": ([sa.Column("value", sa.String, nullable=False)], ("value",)),
    }


def upgrade() -> None:
    """Create the index tables of the string, reference, date, number, quantity and uri types."""
    for table, (columns, lookup) in _tables().items():
        op.create_table(
            table,
            sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("resource_type", sa.String(64), nullable=False),
            sa.Column("resource_id", sa.String(64), nullable=False),
            sa.Column("param", sa.String(64), nullable=False),
            *columns,
            sa.ForeignKeyConstraint(
                ["resource_type", "resource_id"],
                ["fhir_resource.resource_type", "fhir_resource.id"],
                ondelete="CASCADE",
            ),
        )
        stem = table.removesuffix("_index")
        op.create_index(f"ix_{stem}_lookup", table, ["resource_type", "param", *lookup])
        op.create_index(f"ix_{stem}_resource", table, ["resource_type", "resource_id"])


def downgrade() -> None:
    """Drop the index tables this revision created."""
    for table in reversed(list(_tables())):
        stem = table.removesuffix("_index")
        op.drop_index(f"ix_{stem}_resource", table_name=table)
        op.drop_index(f"ix_{stem}_lookup", table_name=table)
        op.drop_table(table)
