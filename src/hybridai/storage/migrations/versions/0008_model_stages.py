"""Model lifecycle (issue 6): per-model retraining policies.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retraining_policies",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("last_triggered_at", sa.Double(), nullable=True),
        sa.Column("last_reason", sa.Text(), nullable=True),
        sa.Column("last_run_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_retraining_policies"),
    )


def downgrade() -> None:
    op.drop_table("retraining_policies")
