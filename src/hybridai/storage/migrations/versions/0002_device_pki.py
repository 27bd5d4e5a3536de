"""Device certificates (PKI): devices prove who they are with a certificate, not a bearer secret.

Drops the device bearer credential and records every certificate the platform CA issued, so
each request can check that its certificate's serial is one the cloud issued to that device,
unexpired and unrevoked.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_constraint("uq_devices_credential_hash", type_="unique")
        batch.drop_column("credential_hash")
    op.create_table(
        "device_certificates",
        sa.Column("serial", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(63), nullable=False),
        sa.Column("not_before", sa.Double(), nullable=False),
        sa.Column("not_after", sa.Double(), nullable=False),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.device_id"],
            name="fk_device_certificates_device_id_devices",
        ),
        sa.PrimaryKeyConstraint("serial", name="pk_device_certificates"),
    )
    op.create_index("ix_device_certificates_device_id", "device_certificates", ["device_id"])


def downgrade() -> None:
    op.drop_index("ix_device_certificates_device_id", table_name="device_certificates")
    op.drop_table("device_certificates")
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("credential_hash", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_devices_credential_hash", ["credential_hash"])
