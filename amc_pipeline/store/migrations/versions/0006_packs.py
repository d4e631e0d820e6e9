"""Packing: which attempt's AMC execution a window rides on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03

Why a column on attempts and not a table of packs: each window keeps its own execution and attempt
(its own status, landing and partition); a pack is exactly "the attempts whose pack_leader_id is L",
with L the attempt that AMC knows. Retries create new attempts, so a retried pack is a new set of
rows and the old one stays as it was recorded. (Issue 12 may add a migration beside this one: renumber
on merge.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("amc_execution_attempts", sa.Column("pack_leader_id", sa.Integer, nullable=True))
    op.create_index("ix_amc_execution_attempts_pack_leader", "amc_execution_attempts", ["pack_leader_id"])


def downgrade() -> None:
    op.drop_index("ix_amc_execution_attempts_pack_leader", "amc_execution_attempts")
    with op.batch_alter_table("amc_execution_attempts") as batch:
        batch.drop_column("pack_leader_id")
