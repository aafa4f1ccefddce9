"""The date index's per-resource index also holds param, low and high.

A date condition of a search is checked for each candidate resource (a correlated EXISTS) rather
than listed in full: with (resource_type, resource_id, param, low, high) that check reads the
index alone, and SQLite no longer picks the (resource_type, param, low) index for it, a range
scan per candidate. Deleting a resource's rows still uses the index's first two columns.

Revision ID: f0005
Revises: f0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "f0005"
down_revision: str | None = "f0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ["resource_type", "resource_id"]


def upgrade() -> None:
    """Rebuild ix_fhir_date_resource with param, low and high after the resource key."""
    op.drop_index("ix_fhir_date_resource", table_name="fhir_date_index")
    op.create_index("ix_fhir_date_resource", "fhir_date_index", [*_COLUMNS, "param", "low", "high"])


def downgrade() -> None:
    """Back to the resource key alone."""
    op.drop_index("ix_fhir_date_resource", table_name="fhir_date_index")
    op.create_index("ix_fhir_date_resource", "fhir_date_index", _COLUMNS)
