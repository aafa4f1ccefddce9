"""journal_message.sent_at and .sender: the sender's own timestamp and who stamped it

Revision ID: e0002
Revises: e0001

"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e0002"
down_revision = "e0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("journal_message", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("sender", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("journal_message", schema=None) as batch_op:
        batch_op.drop_column("sender")
        batch_op.drop_column("sent_at")
