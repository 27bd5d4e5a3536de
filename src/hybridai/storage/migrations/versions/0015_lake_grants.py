"""Read grants on lake streams, per role or user (issue 11).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lake_grants",
        sa.Column("stream", sa.String(63), nullable=False),
        sa.Column("grantee", sa.String(200), nullable=False),
        sa.Column("granted_at", sa.Double(), nullable=False),
        sa.Column("granted_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("stream", "grantee", name="pk_lake_grants"),
    )


def downgrade() -> None:
    op.drop_table("lake_grants")
