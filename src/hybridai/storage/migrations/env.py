"""Alembic environment, driven only programmatically by ``hybridai.storage.metadata.migrate``.

``migrate`` opens the connection, takes the migration lock and begins the transaction; this
file only runs the migrations on that connection, so Alembic never manages transactions here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from hybridai.storage.tables import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "hybridai migrations run through hybridai.storage.metadata.migrate(engine), "
        "not the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
