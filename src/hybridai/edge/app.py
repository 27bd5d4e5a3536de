"""The edge agent's HTTP face: Open Inference Protocol v2, record ingest, status.

Served twice: on HOST:PORT in plain HTTP for the site's LAN clients (who bring a site key),
and on the peer listener over mutual TLS (site peers, and clients that want TLS); every route
but the health probes asks ``lan_auth`` first.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hybridai import __version__
from hybridai.edge.admin import admin_router
from hybridai.edge.agent import EdgeAgent
from hybridai.edge.grpc_listener import GrpcListener
from hybridai.edge.ingest import formats
from hybridai.edge.ingest.schemas import SchemaViolation
from hybridai.edge.lan_auth import LanAuthMiddleware, LanGuard
from hybridai.edge.peer_listener import PeerListener
from hybridai.edge.settings import EdgeSettings
from hybridai.edge.store.edge_store import AppendResult, InvalidRecord
from hybridai.observability import trace
from hybridai.observability.requests import RequestLogMiddleware
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import StatusReport
from hybridai.serving.body_limit import BodyLimitMiddleware, LimitFor
from hybridai.serving.errors import install_error_handlers
from hybridai.serving.path_names import checked_path_names
from hybridai.serving.v2_fast import FastInferApp
from hybridai.serving.v2_routes import v2_router

STREAM = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
INGEST_PATH = "/api/v1/streams/"
MAX_OTHER_BYTES = 64 * 1024 * 1024  # all but ingest and v2 inference


class IngestResult(BaseModel):
    stream: str
    accepted: int
    duplicates: int


def _decode_and_write(
    agent: EdgeAgent, stream: str, content_type: str | None, body: bytes
) -> AppendResult:
    """Decode a batch body (JSON, MessagePack or Arrow IPC) and store it; off the event loop."""
    import pyarrow as pa

    limits = formats.DecodeLimits(
        agent.settings.max_ingest_records, agent.settings.max_ingest_decoded_bytes
    )
    decoded = formats.decode(content_type, body, limits)
    if isinstance(decoded, pa.Table):
        return agent.ingest.write_table(stream, decoded)
    return agent.ingest.write(stream, decoded)


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

    app = FastInferApp(
        title=f"hybridai edge {agent.device_id}",
        version=__version__,
        description="Edge agent: Open Inference Protocol v2 (placed at edge or cloud per "
        "request), sensor record ingest, status.",
        lifespan=lifespan,
        dependencies=[Depends(checked_path_names)],  # names in paths: protocol.names
    )
    app.state.agent = agent
    app.serve_infer_from(agent.backend)  # v2 infer: this app's middleware, then the backend
    app.add_middleware(BodyLimitMiddleware, limit_for=_body_limits(agent.settings))
    install_error_handlers(app)
    # Outermost: a request without the site's credentials is refused before anything reads it.
    app.add_middleware(LanAuthMiddleware, guard=guard)
    # The trace starts here (or continues the caller's); each request logged at debug
    app.add_middleware(RequestLogMiddleware, level=logging.DEBUG)
    trace.set_process_device(agent.device_id)
    app.include_router(v2_router(agent.backend))
    app.include_router(admin_router(agent))  # operators only: cloud-signed access tokens

    @app.post("/api/v1/streams/{stream}/records", tags=["ingest"])
    async def ingest(stream: str, request: Request) -> IngestResult:
        """Store a batch of records durably; 200 means every accepted record survives a crash.

        The body is JSON, MessagePack (``application/msgpack``) or an Arrow IPC stream
        (``application/vnd.apache.arrow.stream``), by ``Content-Type``; records must fit the
        stream's schema, or nothing of the batch is stored.
        """
        if not STREAM.fullmatch(stream):
            raise ApiError(
                400,
                ErrorCode.BAD_REQUEST,
                f"stream name '{stream}' is invalid: use lowercase letters, digits and _, "
                "starting with a letter",
            )
        try:  # refuse an unknown format before reading the body
            formats.media_type(request.headers.get("content-type"))
        except formats.UnsupportedFormat as exc:
            raise ApiError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
        body = await request.body()
        try:
            result = await run_in_threadpool(
                _decode_and_write, agent, stream, request.headers.get("content-type"), body
            )
        except formats.TooLarge as exc:
            raise ApiError(413, ErrorCode.PAYLOAD_TOO_LARGE, str(exc)) from None
        except formats.MalformedBody as exc:
            code = ErrorCode.MALFORMED_JSON if exc.json_invalid else ErrorCode.BAD_REQUEST
            raise ApiError(400, code, str(exc)) from None
        except SchemaViolation as exc:
            raise ApiError(
                400,
                ErrorCode.SCHEMA_MISMATCH,
                f"nothing stored: {exc}; fix the record or the stream's schema "
                "(`hybridai stream schema set`, or HYBRIDAI_EDGE_STREAM_SCHEMAS)",
            ) from None
        except InvalidRecord as exc:
            raise ApiError(400, ErrorCode.INVALID_INPUT, f"nothing stored: {exc}") from None
        return IngestResult(stream=stream, accepted=result.accepted, duplicates=result.duplicates)

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
