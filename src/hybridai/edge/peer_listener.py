"""The edge's second listener: its API over mutual TLS with the device certificate.

Site peers hand inferences to each other here, each presenting its own device certificate
(``lan_auth`` admits devices of the same site) and pinning the other's (``routing/peer_tls``).
LAN clients that hold a site key may use it too, to keep the key off the wire in the clear:
a client certificate is asked for, not required. It opens once the device holds a
certificate (a server needs one), and picks up a renewed certificate without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from typing import Any

import uvicorn

from hybridai.edge.identity import DeviceIdentity
from hybridai.link.tls import ServerTls, server_context
from hybridai.link.transport import server_config

log = logging.getLogger(__name__)
RELOAD_CHECK_S = 30.0  # how often to look for a renewed certificate


class _Companion(uvicorn.Server):
    """A second server in the process: the main one owns the signals and the lifespan."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PeerListener:
    def __init__(self, identity: DeviceIdentity, host: str, port: int) -> None:
        self.identity = identity
        self.host = host
        self.port = port
        self._server: _Companion | None = None
        self._task: asyncio.Task[None] | None = None

    def _context(self) -> ssl.SSLContext:
        ca = self.identity.ca_file
        assert ca is not None, "a device with a certificate has its CA"
        return server_context(ServerTls(self.identity.cert_file, self.identity.key_file, ca))

    def start(self, app: Any, enrolled: asyncio.Event) -> None:
        self._task = asyncio.create_task(self._run(app, enrolled))

    async def _run(self, app: Any, enrolled: asyncio.Event) -> None:
        await enrolled.wait()
        context = self._context()
        config = server_config(app, self.host, self.port, tls=context, lifespan="off")
        self._server = _Companion(config)
        serving = asyncio.create_task(self._server.serve())
        log.info("peer listener on https://%s:%d (mutual TLS)", self.host, self.port)
        seen = self.identity.cert_file.stat().st_mtime_ns
        while not serving.done():
            await asyncio.wait({serving}, timeout=RELOAD_CHECK_S)
            with contextlib.suppress(OSError, ssl.SSLError):
                now = self.identity.cert_file.stat().st_mtime_ns
                if now != seen:  # renewed: new handshakes present the new certificate
                    context.load_cert_chain(self.identity.cert_file, self.identity.key_file)
                    seen = now
        await serving

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                if self._server is None:
                    self._task.cancel()
                await self._task
