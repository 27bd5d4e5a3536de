"""Login throttling counted in the metadata store, so several cloud replicas throttle as one.

The rule is ``governance.throttle``'s (free misses, then a lock doubling up to a maximum; a
success clears the user's key, not the address's). Each miss is one transaction of its own
that increments the key's row in place (``failures = failures + 1``), so concurrent misses on
two replicas both count; it is committed even when the login that missed rolls back. Rows
past ``forget_after_s`` are deleted as misses come in, so made-up names cannot grow the table
without bound.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import Engine, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hybridai.governance.throttle import lockout_s
from hybridai.storage.tables import LoginFailureRow


def stored_key(key: str) -> str:
    """``user:NAME`` as ``user:`` and the name's digest.

    What someone typed as a name (a password, a NUL, 10,000 characters) is neither kept nor
    able to break the column.
    """
    kind, _, value = key.partition(":")
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind[:16]}:{digest}"


class StoredLoginThrottle:
    """A ``governance.throttle.Throttle`` whose counters live in the ``login_failures`` table."""

    def __init__(
        self,
        engine: Engine,
        free_failures: int = 5,
        base_s: float = 1.0,
        max_s: float = 15 * 60.0,
        forget_after_s: float = 60 * 60.0,
    ) -> None:
        self.engine = engine
        self.free_failures = free_failures
        self.base_s = base_s
        self.max_s = max_s
        self.forget_after_s = forget_after_s

    def retry_after(self, keys: list[str], now: float) -> float:
        """Seconds until any of ``keys`` may try again; 0 when none is locked."""
        stored = [stored_key(k) for k in keys]
        with self.engine.connect() as connection:
            until = connection.execute(
                select(LoginFailureRow.locked_until).where(LoginFailureRow.key.in_(stored))
            ).scalars()
            return max([0.0, *(u - now for u in until)])

    def failure(self, keys: list[str], now: float) -> float:
        """Count a miss for each key; returns the longest lockout it started (0 if none)."""
        longest = 0.0
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        with self.engine.begin() as connection:
            connection.execute(
                delete(LoginFailureRow).where(
                    LoginFailureRow.last_failure < now - self.forget_after_s,
                    LoginFailureRow.locked_until <= now,
                )
            )
            for key in sorted(stored_key(k) for k in keys):  # one order: no deadlock
                connection.execute(
                    insert(LoginFailureRow)
                    .values(key=key, failures=0, locked_until=0.0, last_failure=now)
                    .on_conflict_do_nothing(index_elements=["key"])
                )
                stale = LoginFailureRow.last_failure < now - self.forget_after_s
                failures = connection.execute(
                    update(LoginFailureRow)
                    .where(LoginFailureRow.key == key)
                    .values(
                        failures=case((stale, 1), else_=LoginFailureRow.failures + 1),
                        last_failure=now,
                    )
                    .returning(LoginFailureRow.failures)
                ).scalar_one()
                lock = lockout_s(failures, self.free_failures, self.base_s, self.max_s)
                if lock > 0:
                    until = now + lock
                    connection.execute(
                        update(LoginFailureRow)
                        .where(LoginFailureRow.key == key, LoginFailureRow.locked_until < until)
                        .values(locked_until=until)
                    )
                    longest = max(longest, lock)
        return longest

    def success(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                delete(LoginFailureRow).where(LoginFailureRow.key == stored_key(key))
            )
