"""The edge agent's HTTP face: Open Inference Protocol v2, record ingest, status.

Served twice: on HOST:PORT in plain HTTP for the site's LAN clients (who bring a site key),
and on the peer listener over mutual TLS (site peers, and clients that want TLS); every route
but the health probes asks ``lan_auth`` first.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from hybridai import __version__
from hybridai.edge.admin import admin_router
from hybridai.edge.agent import EdgeAgent
from hybridai.edge.grpc_listener import GrpcListener
from hybridai.edge.ingest import formats
from hybridai.edge.ingest.http_route import (
    ROUTE,
    IngestResult,
    IngestRoute,
    Limits,
    answer_ingest,
    is_ingest,
)
from hybridai.edge.ingest.intake import Ingest
from hybridai.edge.lan_auth import LanAuthMiddleware, LanGuard
from hybridai.edge.peer_listener import PeerListener
from hybridai.edge.settings import EdgeSettings
from hybridai.observability import trace
from hybridai.observability.requests import RequestLogMiddleware
from hybridai.protocol.fleet import StatusReport
from hybridai.serving.body_limit import BodyLimitMiddleware, LimitFor
from hybridai.serving.errors import install_error_handlers
from hybridai.serving.path_names import checked_path_names
from hybridai.serving.v2_fast import FastInferApp
from hybridai.serving.v2_routes import v2_router

INGEST_PATH = "/api/v1/streams/"
MAX_OTHER_BYTES = 64 * 1024 * 1024  # all but ingest and v2 inference


class EdgeApp(FastInferApp):
    """The edge's app: v2 infer and record ingest take their lean paths (``http_route``).

    ``serve_ingest_into`` once; like the infer chain, the ingest chain is built at the first
    request, after every ``add_middleware``, from the app's own middleware list.
    """

    _ingest_route: tuple[Ingest, Limits] | None = None
    _ingest_chain: ASGIApp | None = None

    def serve_ingest_into(self, ingest: Ingest, limits: Limits) -> None:
        self._ingest_route = ingest, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._ingest_route is None or not is_ingest(scope):
            await super().__call__(scope, receive, send)
            return
        if self._ingest_chain is None:
            app: ASGIApp = IngestRoute(super().__call__, *self._ingest_route)
            for cls, args, kwargs in reversed(self.user_middleware):
                app = cls(app, *args, **kwargs)
            self._ingest_chain = app
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        await self._ingest_chain(scope, receive, send)


def _body_limits(settings: EdgeSettings) -> LimitFor:
    def limit(method: str, path: str) -> int:
        if path.startswith(INGEST_PATH):
            return settings.max_ingest_bytes
        return settings.max_infer_json_bytes if path.startswith("/v2/") else MAX_OTHER_BYTES

    return limit


def create_app(agent: EdgeAgent) -> FastAPI:
    settings = agent.settings
    peers = PeerListener(agent.identity, settings.host, settings.peer_port or settings.port + 1)
    guard = LanGuard(settings.lan_auth, agent.site_access)
    grpc = GrpcListener(agent, guard)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        peers.start(app, agent.enrolled)
        await grpc.start()  # the v2 gRPC service, when a port is set
        yield
        await grpc.stop()
        await peers.stop()
        await agent.stop()

    app = EdgeApp(
        title=f"hybridai edge {agent.device_id}",
        version=__version__,
        description="Edge agent: Open Inference Protocol v2 (placed at edge or cloud per "
        "request), sensor record ingest, status.",
        lifespan=lifespan,
        dependencies=[Depends(checked_path_names)],  # names in paths: protocol.names
    )
    app.state.agent = agent
    app.serve_infer_from(agent.backend)  # v2 infer: this app's middleware, then the backend

    def limits() -> formats.DecodeLimits:
        return formats.DecodeLimits(settings.max_ingest_records, settings.max_ingest_decoded_bytes)

    app.serve_ingest_into(agent.ingest, limits)  # ingest: this app's middleware, then the store
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limits(agent.settings))
    install_error_handlers(app)
    # Outermost: a request without the site's credentials is refused before anything reads it.
    app.add_middleware(LanAuthMiddleware, guard=guard)
    # The trace starts here (or continues the caller's); each request logged at debug
    app.add_middleware(RequestLogMiddleware, level=logging.DEBUG)
    trace.set_process_device(agent.device_id)
    app.include_router(v2_router(agent.backend))
    app.include_router(admin_router(agent))  # operators only: cloud-signed access tokens

    @app.post(ROUTE, tags=["ingest"])
    async def ingest(stream: str, request: Request) -> IngestResult:
        """Store a batch of records durably; 200 means every accepted record survives a crash.

        The body is JSON, MessagePack (``application/msgpack``) or an Arrow IPC stream
        (``application/vnd.apache.arrow.stream``), by ``Content-Type``; records must fit the
        stream's schema, or nothing of the batch is stored. (Requests take ``IngestRoute``,
        outside the framework; this route answers alike and describes it.)
        """
        content_type = request.headers.get("content-type")
        return await answer_ingest(agent.ingest, limits, stream, content_type, request.body)

    @app.get("/metrics", tags=["status"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of the router: decisions by reason, escalations, latency."""
        return Response(
            agent.backend.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/api/v1/status", tags=["status"])
    async def status() -> StatusReport:
        return await run_in_threadpool(agent.status)

    return app
