"""Quarantined sync batches: what one device sent that the lake could not take (issue 11.5).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantined_batches",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(63), nullable=False),
        sa.Column("batch_seq", sa.BigInteger(), nullable=True),
        sa.Column("stream", sa.String(63), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("blob_key", sa.String(300), nullable=False),
        sa.Column("quarantined_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_quarantined_batches"),
        sa.UniqueConstraint("device_id", "batch_seq", name="uq_quarantined_batches_device_id"),
    )
    op.create_index(
        "ix_quarantined_batches_device_id", "quarantined_batches", ["device_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_quarantined_batches_device_id", table_name="quarantined_batches")
    op.drop_table("quarantined_batches")
