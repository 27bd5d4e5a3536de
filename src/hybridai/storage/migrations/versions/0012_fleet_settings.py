"""Edge settings an operator sets for the fleet, a site, a tag or a device (issue 10).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fleet_settings",
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("name", sa.String(127), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("level", "name", name="pk_fleet_settings"),
    )


def downgrade() -> None:
    op.drop_table("fleet_settings")
