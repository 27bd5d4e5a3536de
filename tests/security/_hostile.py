"""Helpers of the security suite: a process's memory, and an edge started from a bundle.

``Rss`` reads a process's resident memory from ``/proc`` (Linux): ``reset_peak`` sets its peak
(``VmHWM``) back to the current RSS, so the peak read after a request is the request's own.
"""

from __future__ import annotations

from pathlib import Path

BUDGET = 256 * 2**20  # one request may raise a process's RSS by at most this over idle
DEVICE, SITE = "edge-sec", "site-sec"


class Rss:
    """Resident memory of one process, in bytes."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _field(self, name: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"/proc/{self.pid}/status has no {name}")

    def now(self) -> int:
        return self._field("VmRSS")

    def peak(self) -> int:
        return self._field("VmHWM")

    def reset_peak(self) -> int:
        """Start a new peak from now; returns the RSS it starts from (the idle figure)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self.now()
