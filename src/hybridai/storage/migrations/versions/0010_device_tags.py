"""Device tags (issue 6): operator labels on devices and on the enrollment tokens that set them.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default fills the rows that exist: every device and token starts untagged.
    for table in ("devices", "enrollment_tokens"):
        op.add_column(
            table, sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    for table in ("enrollment_tokens", "devices"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tags")
