"""trust: mail backoff and send-time secrets, identity expiry, operator on behalf, the demo marker,
address look-ups by an index on the folded address

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("secret", sa.Text(), nullable=True))
    op.add_column("conversations", sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("conversations", sa.Column("assumed_by", sa.String(length=100), nullable=True))
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=50), primary_key=True),
        sa.Column("value", sa.String(length=200), nullable=False),
    )
    op.create_index("ix_members_email_folded", "members", [sa.text("lower(email)")])


def downgrade() -> None:
    op.drop_index("ix_members_email_folded", table_name="members")
    op.drop_table("meta")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("assumed_by")
        batch.drop_column("verified_at")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("secret")
        batch.drop_column("next_attempt_at")
