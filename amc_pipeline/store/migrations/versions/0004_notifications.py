"""Notifications: what each target was sent, and what it still has to be sent.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Why in the store: "exactly one message per event per target" must hold across sensor ticks, delivery
retries, daemon restarts and two evaluations at once. The unique (target, event_key) index makes a
second record of one event impossible; claiming a row before sending is a compare-and-set on
`attempts`, so two evaluations never both send it. No URL is stored: targets name an environment
variable, read at send time.
"""

import sqlalchemy as sa
from alembic import op

from amc_pipeline.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "amc_notifications",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("event_key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("workflow", sa.String(128), nullable=True),
        sa.Column("partition_key", sa.String(64), nullable=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_try_at", UTCDateTime(), nullable=True),
        sa.Column("next_try_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
    )
    op.create_index("uq_amc_notifications_target_event", "amc_notifications", ["target", "event_key"], unique=True)
    op.create_index("ix_amc_notifications_pending", "amc_notifications", ["sent_at", "next_try_at"])


def downgrade() -> None:
    op.drop_index("ix_amc_notifications_pending", table_name="amc_notifications")
    op.drop_index("uq_amc_notifications_target_event", table_name="amc_notifications")
    op.drop_table("amc_notifications")
