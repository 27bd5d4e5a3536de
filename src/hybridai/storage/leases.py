"""Leases: at most one holder of a named job at a time, across every process on one store.

Several cloud replicas share one metadata store; a ticker (rollouts, retraining, alert
evaluation) should run on one of them, and on another when that one dies. A lease is a row
``(name, holder, expires_at)``: a holder takes or renews it with a single conditional UPDATE
(``WHERE holder = me OR expires_at < now``), which both SQLite and PostgreSQL apply atomically,
so two replicas never both succeed; the first holder of a name INSERTs it, and a concurrent
INSERT loses on the primary key. No connection is held between calls (unlike an advisory lock,
which dies with its connection and needs one connection per lock): a dead holder simply stops
renewing, and the lease is free ``ttl_s`` after its last renewal.

The clock is passed in. Replicas' clocks should agree to well within the TTL (NTP does).
"""

from __future__ import annotations

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from hybridai.storage.tables import LeaseRow


def acquire(engine: Engine, name: str, holder: str, now: float, ttl_s: float) -> bool:
    """Take or renew lease ``name`` for ``ttl_s`` seconds; False while another holds it."""
    with engine.begin() as connection:
        renewed = connection.execute(
            update(LeaseRow)
            .where(LeaseRow.name == name)
            .where((LeaseRow.holder == holder) | (LeaseRow.expires_at < now))
            .values(holder=holder, expires_at=now + ttl_s)
        )
        if renewed.rowcount == 1:
            return True
        if connection.execute(select(LeaseRow.name).where(LeaseRow.name == name)).first():
            return False  # held by someone else, unexpired
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(LeaseRow).values(name=name, holder=holder, expires_at=now + ttl_s)
            )
    except IntegrityError:
        return False  # another holder inserted it first
    return True


def release(engine: Engine, name: str, holder: str) -> None:
    """Give the lease up now (a clean shutdown), so another replica need not wait out the TTL."""
    with engine.begin() as connection:
        connection.execute(
            update(LeaseRow)
            .where(LeaseRow.name == name, LeaseRow.holder == holder)
            .values(expires_at=0.0)
        )


def holder_of(engine: Engine, name: str, now: float) -> str | None:
    """Who holds ``name`` now (None when nobody does, or the lease expired)."""
    with engine.connect() as connection:
        row = connection.execute(
            select(LeaseRow.holder, LeaseRow.expires_at).where(LeaseRow.name == name)
        ).first()
    return row.holder if row is not None and row.expires_at >= now else None


def forget(engine: Engine, name: str) -> None:
    """Drop a lease row entirely (tests, and a job that no longer exists)."""
    with engine.begin() as connection:
        connection.execute(delete(LeaseRow).where(LeaseRow.name == name))
