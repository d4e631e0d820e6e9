"""The monitor's heartbeat: when it last reached AMC successfully.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

Why: the health check must tell "the poller is stale" and "AMC is unreachable" apart from "nothing to
do", which the executions alone cannot show.
"""

import sqlalchemy as sa
from alembic import op

from amc_pipeline.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "amc_monitor_heartbeats",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_ok_at", UTCDateTime(), nullable=True),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("amc_monitor_heartbeats")
