"""Site API keys and device identity bound to a key (issue 11, items 3 and 6).

``site_keys`` holds hashed API keys a site operator issues to the site's LAN clients; the
site's edges check them offline. ``device_certificates.public_key_sha256`` records the key
each certificate was issued for: a certificate with a known serial and another key is refused.
Rows issued before this revision have no key recorded and are bound on first use.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("device_certificates") as batch:
        batch.add_column(sa.Column("public_key_sha256", sa.String(64), nullable=True))
    op.create_table(
        "site_keys",
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("site", sa.String(63), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("revoked_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_site_keys"),
        sa.UniqueConstraint("key_hash", name="uq_site_keys_key_hash"),
    )
    op.create_index("ix_site_keys_site", "site_keys", ["site"])


def downgrade() -> None:
    op.drop_index("ix_site_keys_site", table_name="site_keys")
    op.drop_table("site_keys")
    with op.batch_alter_table("device_certificates") as batch:
        batch.drop_column("public_key_sha256")
