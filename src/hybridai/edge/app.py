"""The edge agent's HTTP face: Open Inference Protocol v2, record ingest, status."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from hybridai import __version__
from hybridai.edge.admin import admin_router
from hybridai.edge.agent import EdgeAgent
from hybridai.edge.store import InvalidRecord
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import StatusReport
from hybridai.serving.errors import install_error_handlers
from hybridai.serving.v2_routes import v2_router

STREAM = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class IngestBatch(BaseModel):
    records: list[dict[str, Any]]


class IngestResult(BaseModel):
    stream: str
    accepted: int
    duplicates: int


def create_app(agent: EdgeAgent) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        yield
        await agent.stop()

    app = FastAPI(
        title=f"hybridai edge {agent.device_id}",
        version=__version__,
        description="Edge agent: Open Inference Protocol v2 (placed at edge or cloud per "
        "request), sensor record ingest, status.",
        lifespan=lifespan,
    )
    app.state.agent = agent
    install_error_handlers(app)
    app.include_router(v2_router(agent.backend))
    app.include_router(admin_router(agent))  # operators only: cloud-signed access tokens

    @app.post("/api/v1/streams/{stream}/records", tags=["ingest"])
    async def ingest(stream: str, request: Request) -> IngestResult:
        """Store a batch of records durably; 200 means every accepted record survives a crash."""
        if not STREAM.match(stream):
            raise ApiError(
                400,
                ErrorCode.BAD_REQUEST,
                f"stream name '{stream}' is invalid: use lowercase letters, digits and _, "
                "starting with a letter",
            )
        body = await request.body()
        try:
            batch = IngestBatch.model_validate_json(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            code = (
                ErrorCode.MALFORMED_JSON
                if first["type"] == "json_invalid"
                else ErrorCode.BAD_REQUEST
            )
            raise ApiError(
                400, code, f'send {{"records": [{{...}}, ...]}}: {first["msg"]} at {first["loc"]}'
            ) from None
        try:
            result = await run_in_threadpool(agent.store.append, stream, batch.records)
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
