"""Remote tiers: a model the cloud forwards to another Open Inference Protocol server (issue 13).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_tiers",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_remote_tiers"),
    )


def downgrade() -> None:
    op.drop_table("remote_tiers")
