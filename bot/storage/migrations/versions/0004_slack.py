"""slack: processed Events API deliveries, and the secretariat channel's message of each request

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_events",
        sa.Column("event_id", sa.String(length=100), primary_key=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_slack_events_claimed_at", "slack_events", ["claimed_at"])
    op.create_table(
        "secretariat_posts",
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("secretariat_requests.id"), primary_key=True),
        sa.Column("channel", sa.String(length=40), nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(length=200), nullable=True),
    )
    op.create_index("ix_secretariat_posts_message", "secretariat_posts", ["channel", "ts"])


def downgrade() -> None:
    op.drop_index("ix_secretariat_posts_message", table_name="secretariat_posts")
    op.drop_table("secretariat_posts")
    op.drop_index("ix_slack_events_claimed_at", table_name="slack_events")
    op.drop_table("slack_events")
