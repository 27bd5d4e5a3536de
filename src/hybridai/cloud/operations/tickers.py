"""Cluster-wide tickers: each periodic job runs on one cloud replica at a time.

Every replica spawns every ticker, but a step runs only while its replica holds the job's
lease in the metadata store (``storage.leases``); the others keep asking at a third of the
lease's TTL and take over once the holder stops renewing (it died, or shut down and released).
With one process (SQLite, the default) the lease is simply always this process's. The jobs are
safe to overlap anyway (the rollout driver locks its rows; the alert evaluator and the
compactor are idempotent): the lease saves the duplicate work and the racing transactions.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import Engine

from hybridai.cloud.context import Cloud
from hybridai.storage import leases

log = logging.getLogger(__name__)


class Tickers:
    """The leases this replica holds, under one holder name; ``release_all`` at shutdown."""

    def __init__(self, engine: Engine, holder: str, ttl_s: float) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl_s = ttl_s
        self.held: set[str] = set()

    @classmethod
    def of(cls, cloud: Cloud) -> Tickers:
        """The replica's tickers, named by host:port.

        A replica restarted in place (kill -9, then start) takes its own leases back at once
        instead of waiting out their TTL.
        """
        holder = f"{socket.gethostname()[:120]}:{cloud.settings.port}"
        return cls(cloud.engine, holder, cloud.settings.lease_ttl_s)

    def leased(
        self, name: str, step: Callable[[], Awaitable[float]]
    ) -> Callable[[], Awaitable[float]]:
        """``step`` wrapped to run only while this replica holds lease ``name``."""
        ttl = self.ttl_s

        due = 0.0  # monotonic time of this replica's next step while it holds the lease

        async def run() -> float:
            nonlocal due
            ours = await asyncio.to_thread(
                leases.acquire, self.engine, name, self.holder, time.time(), ttl
            )
            if not ours:
                if name in self.held:
                    log.warning("lease %s lost to another replica: its ticks run there", name)
                self.held.discard(name)
                return ttl / 3
            if name not in self.held:
                log.info("lease %s taken by %s: its ticks run here", name, self.holder)
                self.held.add(name)
                due = 0.0
            if time.monotonic() >= due:
                due = time.monotonic() + await step()
            return max(0.0, min(due - time.monotonic(), ttl / 3))  # renew before it runs out

        return run

    def release_all(self) -> None:
        for name in sorted(self.held):
            try:
                leases.release(self.engine, name, self.holder)
            except Exception:  # the store may be gone at shutdown: the TTL frees it then
                log.warning("could not release lease %s; it expires by itself", name)
        self.held.clear()
