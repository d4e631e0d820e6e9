"""Indexes serving the monitor sensor's due_summary and the daily-quota count.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-10

Why: the sensor asks every 15 s how many QUEUED attempts are due for submit and how many are ambiguous
creates (QUEUED with submit_started_at set). With (status, submit_started_at, next_check_at) both are
index range counts, however many attempts the table holds. The quota count (`submitted_since`) filters
on submitted_at / submit_started_at ranges, served by the two single-column indexes.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_amc_execution_attempts_due",
        "amc_execution_attempts",
        ["status", "submit_started_at", "next_check_at"],
    )
    op.create_index("ix_amc_execution_attempts_submitted_at", "amc_execution_attempts", ["submitted_at"])
    op.create_index("ix_amc_execution_attempts_submit_started_at", "amc_execution_attempts", ["submit_started_at"])


def downgrade() -> None:
    op.drop_index("ix_amc_execution_attempts_submit_started_at", table_name="amc_execution_attempts")
    op.drop_index("ix_amc_execution_attempts_submitted_at", table_name="amc_execution_attempts")
    op.drop_index("ix_amc_execution_attempts_due", table_name="amc_execution_attempts")
