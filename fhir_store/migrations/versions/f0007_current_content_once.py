"""The current version's content is kept once, in the resource row.

`fhir_resource_version` held every version's content, the current one's included, which
`fhir_resource` holds as well: on an ADT^A04 load 2.7 KB of the 13.7 KB a message took, and a
second copy of the content in every write. The current version's row now has no content; a
write that supersedes it fills it in from the resource row, and vread and history read the
current content from there (`_history._CURRENT_CONTENT`).

The upgrade empties the content of each current version's row. It reads every version row
once; the space it frees is reused by later writes (a VACUUM would hand it back to the disk).

Revision ID: f0007
Revises: f0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f0007"
down_revision: str | None = "f0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The resource row whose current version a version row is.
_ITS_RESOURCE = """
    FROM fhir_resource r
    WHERE r.resource_type = fhir_resource_version.resource_type
      AND r.id = fhir_resource_version.resource_id
      AND r.version_id = fhir_resource_version.version_id
"""


def upgrade() -> None:
    """Empty the content of each current version's row: the resource row holds it."""
    op.execute(
        sa.text(
            f"UPDATE fhir_resource_version SET content = NULL "
            f"WHERE content IS NOT NULL AND EXISTS (SELECT 1 {_ITS_RESOURCE})"
        )
    )


def downgrade() -> None:
    """Give each current version's row its content again, from the resource row."""
    op.execute(
        sa.text(
            f"UPDATE fhir_resource_version SET content = (SELECT r.content {_ITS_RESOURCE}) "
            f"WHERE content IS NULL AND EXISTS (SELECT 1 {_ITS_RESOURCE})"
        )
    )
