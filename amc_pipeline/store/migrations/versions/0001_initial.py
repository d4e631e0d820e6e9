"""Initial tables: executions (one per workflow and window) and their AMC attempts.

Revision ID: 0001
Revises:
Create Date: 2026-05-10

Why the foreign keys from executions to attempts are added last on PostgreSQL: the two tables point
at each other. SQLite accepts the forward reference inline (and cannot add a constraint later).
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    current_fk: list[sa.ForeignKeyConstraint] = []
    if sqlite:
        current_fk = [
            sa.ForeignKeyConstraint(
                ["current_attempt_id"],
                ["amc_execution_attempts.id"],
                name="fk_amc_executions_current_attempt",
            ),
            sa.ForeignKeyConstraint(
                ["landed_attempt_id"], ["amc_execution_attempts.id"], name="fk_amc_executions_landed_attempt"
            ),
        ]
    op.create_table(
        "amc_executions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow", sa.String(128), nullable=False),
        sa.Column("instance_id", sa.String(128), nullable=False),
        sa.Column("partition_key", sa.String(64), nullable=False),
        _ts("window_start", nullable=False),
        _ts("window_end", nullable=False),
        _ts("requested_at", nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False, server_default=sa.text("true")),
        sa.Column("current_attempt_id", sa.Integer, nullable=True),
        _ts("landed_at"),
        sa.Column("rows", sa.BigInteger, nullable=True),
        sa.Column("bytes", sa.BigInteger, nullable=True),
        sa.Column("uri", sa.Text, nullable=True),
        sa.Column("land_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("land_error", sa.Text, nullable=True),
        _ts("next_land_at"),
        sa.Column("landed_attempt_id", sa.Integer, nullable=True),
        *current_fk,
    )
    op.create_index(
        "uq_amc_executions_live_window",
        "amc_executions",
        ["workflow", "partition_key"],
        unique=True,
        sqlite_where=sa.text("live"),
        postgresql_where=sa.text("live"),
    )
    op.create_index("ix_amc_executions_instance_requested", "amc_executions", ["instance_id", "requested_at"])

    op.create_table(
        "amc_execution_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("client_token", sa.String(64), nullable=False),
        sa.Column("amc_execution_id", sa.String(128), nullable=True),
        sa.Column("amc_request_id", sa.String(128), nullable=True),
        sa.Column("amc_status", sa.String(32), nullable=True),
        _ts("created_at", nullable=False),
        _ts("submit_started_at"),
        _ts("submitted_at"),
        _ts("started_at"),
        _ts("completed_at"),
        _ts("status_changed_at"),
        _ts("next_check_at"),
        _ts("last_checked_at"),
        sa.Column("error_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("error_type", sa.String(32), nullable=True),
        sa.Column("retry_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("failure_reason", sa.Text, nullable=True),
        sa.Column("execution_time_seconds", sa.Float, nullable=True),
        sa.Column("output_columns", sa.Text, nullable=True),
        sa.ForeignKeyConstraint(["execution_id"], ["amc_executions.id"], name="fk_amc_execution_attempts_execution"),
    )
    op.create_index("uq_amc_execution_attempts_client_token", "amc_execution_attempts", ["client_token"], unique=True)
    op.create_index("uq_amc_execution_attempts_amc_id", "amc_execution_attempts", ["amc_execution_id"], unique=True)
    op.create_index(
        "uq_amc_execution_attempts_execution_attempt",
        "amc_execution_attempts",
        ["execution_id", "attempt"],
        unique=True,
    )
    op.create_index(
        "ix_amc_execution_attempts_status_next_check", "amc_execution_attempts", ["status", "next_check_at"]
    )
    op.create_index("ix_amc_execution_attempts_status_submitted", "amc_execution_attempts", ["status", "submitted_at"])
    if not sqlite:
        op.create_foreign_key(
            "fk_amc_executions_current_attempt",
            "amc_executions",
            "amc_execution_attempts",
            ["current_attempt_id"],
            ["id"],
        )
        op.create_foreign_key(
            "fk_amc_executions_landed_attempt",
            "amc_executions",
            "amc_execution_attempts",
            ["landed_attempt_id"],
            ["id"],
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_amc_executions_landed_attempt", "amc_executions", type_="foreignkey")
        op.drop_constraint("fk_amc_executions_current_attempt", "amc_executions", type_="foreignkey")
    op.drop_table("amc_execution_attempts")
    op.drop_table("amc_executions")
