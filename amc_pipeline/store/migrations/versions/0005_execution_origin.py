"""Who started an attempt's AMC execution: this pipeline, an AMC schedule, or someone else.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

Why: the monitor adopts executions it did not create (an AMC schedule's runs, executions started in
the console) into the window they cover. Their origin decides what they cost (a scheduled run spends
no ad hoc quota) and tells an operator where a window's data came from. NULL reads as `pipeline`
(every row before this revision was created by us).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("amc_execution_attempts") as batch:
        batch.add_column(sa.Column("origin", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("amc_execution_attempts") as batch:
        batch.drop_column("origin")
