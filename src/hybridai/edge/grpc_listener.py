"""The edge's v2 gRPC service on ``grpc_port``: the router's backend, the site's keys.

Plaintext by default, like the LAN API's HTTP port; with ``grpc_tls`` it presents the device
certificate, which names the device rather than a host: clients verify it against the platform
CA with the device id as the TLS name (``grpc.ssl_target_name_override``). It then opens once
the device holds a certificate, and a renewed one serves new connections without a restart.
Off when no port is set: ``grpc`` is then never imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hybridai.edge.agent import EdgeAgent
from hybridai.edge.grpc_access import lan_admit
from hybridai.edge.lan_auth import LanGuard
from hybridai.link.tls import ServerTls
from hybridai.serving.grpc_server import GrpcInferenceServer

log = logging.getLogger(__name__)


class GrpcListener:
    def __init__(self, agent: EdgeAgent, guard: LanGuard) -> None:
        self.agent = agent
        self.guard = guard
        self._server: GrpcInferenceServer | None = None
        self._waiting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen now (plaintext: a taken port fails the start), or once enrolled (TLS)."""
        if self.agent.settings.grpc_port is None:
            return
        if not self.agent.settings.grpc_tls:
            await self._listen(None)
            return
        self._waiting = asyncio.create_task(self._listen_when_enrolled())

    async def _listen_when_enrolled(self) -> None:
        await self.agent.enrolled.wait()
        identity = self.agent.identity
        try:
            if identity.ca_file is None:
                raise RuntimeError("the device holds a certificate but not its CA")
            await self._listen(ServerTls(identity.cert_file, identity.key_file, identity.ca_file))
        except Exception:
            log.exception("the gRPC service (HYBRIDAI_EDGE_GRPC_TLS) could not start")

    async def _listen(self, tls: ServerTls | None) -> None:
        settings = self.agent.settings
        assert settings.grpc_port is not None
        server = GrpcInferenceServer(
            self.agent.backend,
            settings.host,
            settings.grpc_port,
            admit=lan_admit(self.guard),
            max_message_bytes=settings.max_infer_json_bytes,
            tls=tls,
        )
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._waiting
        if self._server is not None:
            await self._server.stop()
