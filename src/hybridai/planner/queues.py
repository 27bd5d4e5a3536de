"""First-come-first-served servers, computed rather than stepped.

A job offered at the current simulated time starts when the earliest server is free (Lindley's
recursion for c servers), so a queue costs one heap operation per job instead of a SimPy
process: the simulator offers jobs in time order, which is all FCFS needs. The number of
servers may change (cloud autoscaling): a new server starts at a given time, a removed one
finishes the job it holds.
"""

from __future__ import annotations

import heapq


class Servers:
    """``c`` identical FCFS servers; ``offer`` returns when a job starts and ends."""

    def __init__(self, count: int, now: float = 0.0) -> None:
        self._free = [now] * max(count, 0)
        heapq.heapify(self._free)
        self.busy_s = 0.0  # service time handed out so far

    @property
    def count(self) -> int:
        return len(self._free)

    def offer(self, now: float, service_s: float) -> tuple[float, float]:
        """Queue a job arriving ``now`` that needs ``service_s``: its (start, end)."""
        if not self._free:
            raise RuntimeError("no servers")
        start = max(now, self._free[0])
        end = start + service_s
        heapq.heapreplace(self._free, end)
        self.busy_s += service_s
        return start, end

    def ahead(self, now: float) -> int:
        """Servers still busy at ``now`` (a lower bound on the jobs in the system)."""
        return sum(1 for t in self._free if t > now)

    def add(self, ready_at: float) -> None:
        heapq.heappush(self._free, ready_at)

    def remove(self) -> None:
        """Retire the server that frees last (its queued work still completes)."""
        if len(self._free) <= 1:
            return
        self._free.remove(max(self._free))
        heapq.heapify(self._free)


class Pipe:
    """One direction of a link: transfers go through it one at a time at ``bytes_per_s``."""

    def __init__(self, bytes_per_s: float) -> None:
        self.bytes_per_s = bytes_per_s
        self._free = 0.0
        self.bytes = 0.0

    def send(self, now: float, n_bytes: float) -> float:
        """Queue ``n_bytes`` now; when the last byte has left."""
        start = max(now, self._free)
        self._free = start + n_bytes / self.bytes_per_s
        self.bytes += n_bytes
        return self._free
