"""A real uvicorn server in a thread, for the tests of what goes over the wire (TLS)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


@contextlib.contextmanager
def serving_in_thread(config: Any, start_timeout_s: float = 10.0) -> Iterator[uvicorn.Server]:
    """Run a uvicorn server from ``link.transport.server_config`` in a thread; stop it after."""
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield server
    finally:
        server.should_exit = True
        thread.join(10)
