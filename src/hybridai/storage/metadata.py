"""The metadata store: one SQLAlchemy engine chosen by URL, schema managed by Alembic.

SQLite (the embedded default) runs in WAL mode with foreign keys on and a busy timeout, so
several readers and one writer share a file without "database is locked" errors under normal
load. PostgreSQL (production) goes through psycopg 3. ``migrate`` is safe to call at every
start and from several processes at once: it serialises on a database lock, then upgrades only
what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

BUSY_TIMEOUT_S = 30.0
MIGRATIONS = Path(__file__).with_name("migrations")
# Per schema, so isolated schemas in one database (tests, tenants) do not wait for each other.
_PG_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtext('hybridai.migrate:' || current_schema()))"
)


def create_engine_for(url: str) -> Engine:
    """Create an engine for ``sqlite:///PATH``, ``sqlite://`` (in memory) or ``postgresql://``.

    ``postgresql://`` and ``postgres://`` URLs are rewritten to use psycopg 3, the driver the
    ``[postgres]`` extra installs, whatever SQLAlchemy's default driver is.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True)
    raise ValueError(
        f"unsupported metadata store URL scheme {parsed.drivername!r}: "
        "use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    in_memory = parsed.database in (None, "", ":memory:")
    connect_args: dict[str, Any] = {"check_same_thread": False, "timeout": BUSY_TIMEOUT_S}
    if in_memory:
        # One shared connection, or every session would see its own empty database.
        engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
    else:
        Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args=connect_args)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision; a no-op when it is already there.

    The whole upgrade runs in one transaction that first takes a lock (``BEGIN IMMEDIATE`` on
    SQLite, a transaction-scoped advisory lock on PostgreSQL), so two processes starting at
    once do not both try to create the tables: the second waits, then finds nothing to do.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.execute(text(_PG_MIGRATION_LOCK))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit, as service functions return them."""
    return sessionmaker(bind=engine, expire_on_commit=False)
