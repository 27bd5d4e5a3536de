"""Self-healing actions taken on alerts, and what each one changed (issue 12).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "healing_actions",
        sa.Column("action_id", sa.String(32), nullable=False),
        sa.Column("rule", sa.String(63), nullable=False),
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("device_id", sa.String(63), nullable=True),
        sa.Column("subject_key", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("orders", sa.JSON(), nullable=False),
        sa.Column("action", sa.JSON(), nullable=False),
        sa.Column("taken_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("action_id", name="pk_healing_actions"),
    )
    op.create_index("ix_healing_actions_alert", "healing_actions", ["alert_id"])
    op.create_index("ix_healing_actions_device_active", "healing_actions", ["device_id", "active"])
    op.create_index("ix_healing_actions_rule_subject", "healing_actions", ["rule", "subject_key"])


def downgrade() -> None:
    op.drop_table("healing_actions")
