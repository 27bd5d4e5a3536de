"""Model signatures and data policies.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("model_artifacts", sa.Column("signature", sa.String(128), nullable=True))
    op.add_column("model_artifacts", sa.Column("signing_key_id", sa.String(16), nullable=True))
    op.create_table(
        "data_policies",
        sa.Column("dataset", sa.String(63), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("dataset", name="pk_data_policies"),
    )


def downgrade() -> None:
    op.drop_table("data_policies")
    with op.batch_alter_table("model_artifacts") as batch:
        batch.drop_column("signing_key_id")
        batch.drop_column("signature")
