"""One agent per data directory: an exclusive ``flock`` on ``DATA_DIR/agent.lock``.

Two agents on one store would each sync the same records under their own batch numbers and
renew the same certificate. The lock is the kernel's, so it goes with the process, however it
dies (kill -9 included): no stale lock to clear by hand. The file holds the holder's PID, for
the message the second agent prints.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_FILE = "agent.lock"


class DataDirLocked(RuntimeError):
    """Another live process holds this data directory."""


class InstanceLock:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``DataDirLocked`` naming the holder's PID."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirLocked(
                f"another edge agent (PID {holder}) runs on {self.path.parent}: stop it first, "
                "or give this one its own --data-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (its PID is stale)
            self._fd = None
