"""Telemetry time series of device reports, and alerts over them (issue 12).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(63), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("total", sa.Double(), nullable=False),
        sa.Column("low", sa.Double(), nullable=False),
        sa.Column("high", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_telemetry_points"),
    )
    op.create_index(
        "ix_telemetry_points_series", "telemetry_points", ["device_id", "metric", "step", "ts"]
    )
    op.create_index("ix_telemetry_points_step_ts", "telemetry_points", ["step", "ts"])
    op.create_table(
        "telemetry_compaction",
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("done_until", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("step", name="pk_telemetry_compaction"),
    )
    op.create_table(
        "alerts",
        sa.Column("alert_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject_key", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("alert", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("alert_id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_kind_subject", "alerts", ["kind", "subject_key"])
    op.create_index("ix_alerts_state", "alerts", ["state"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("telemetry_compaction")
    op.drop_table("telemetry_points")
