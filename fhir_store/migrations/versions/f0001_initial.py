"""The FHIR store's first tables: resources, versions and the token (identifier) index.

Revision ID: f0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from fhir_store.models import AwareDateTime

revision: str = "f0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _resource_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["resource_type", "resource_id"],
        ["fhir_resource.resource_type", "fhir_resource.id"],
        ondelete="CASCADE",
    )


def upgrade() -> None:
    """Create fhir_resource, fhir_resource_version and fhir_token_index."""
    op.create_table(
        "fhir_resource",
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, nullable=False),
        sa.Column("last_updated", AwareDateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", sa.Text, nullable=True),
    )
    op.create_table(
        "fhir_resource_version",
        sa.Column("resource_type", sa.String(64), primary_key=True),
        sa.Column("resource_id", sa.String(64), primary_key=True),
        sa.Column("version_id", sa.Integer, primary_key=True),
        sa.Column("last_updated", AwareDateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("content", sa.Text, nullable=True),
        _resource_fk(),
    )
    op.create_table(
        "fhir_token_index",
        sa.Column("pk", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource_type", sa.String(64), nullable=False),
        sa.Column("resource_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(64), nullable=False),
        sa.Column("system", sa.String, nullable=True),
        sa.Column("value", sa.String, nullable=False),
        _resource_fk(),
    )
    op.create_index(
        "ix_fhir_token_lookup", "fhir_token_index", ["resource_type", "param", "value", "system"]
    )
    op.create_index("ix_fhir_token_resource", "fhir_token_index", ["resource_type", "resource_id"])


def downgrade() -> None:
    """Drop the FHIR store's tables."""
    op.drop_index("ix_fhir_token_resource", table_name="fhir_token_index")
    op.drop_index("ix_fhir_token_lookup", table_name="fhir_token_index")
    op.drop_table("fhir_token_index")
    op.drop_table("fhir_resource_version")
    op.drop_table("fhir_resource")
