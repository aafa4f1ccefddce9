"""SQLite: lastUpdated text of resources and versions in the form every query binds.

Before this revision the bulk writer stored a whole-second lastUpdated on SQLite as
'2026-11-25 20:16:18', while SQLAlchemy binds a query's instant as '2026-11-25 20:16:18.000000',
which sorts after it: `_lastUpdated=eq`/`ge` and history `_since` on that exact second missed the
resource. The writer now stores the bound form; this revision rewrites the rows already stored.
PostgreSQL keeps timestamptz and is not touched; the date index tables were always bound right.

Revision ID: f0004
Revises: f0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f0004"
down_revision: str | None = "f0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the tables whose last_updated the bulk writer bound without the dialect's processor
_TABLES = ("fhir_resource", "fhir_resource_version")


def upgrade() -> None:
    """Give SQLite's whole-second lastUpdated texts their six zero microsecond digits."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in _TABLES:
        # 'YYYY-MM-DD HH:MM:SS' is 19 characters; with microseconds it has 26
        op.execute(
            sa.text(
                f"UPDATE {table} SET last_updated = last_updated || '.000000' "
                "WHERE length(last_updated) = 19"
            )
        )


def downgrade() -> None:
    """Nothing to undo: the new text is the one SQLAlchemy itself binds for these columns."""
