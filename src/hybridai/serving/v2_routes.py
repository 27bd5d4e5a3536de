"""The Open Inference Protocol v2 REST routes, over any ``InferenceBackend``.

The edge agent and the cloud mount the same router over different backends, so any v2 client
(and any v2 server in the cloud's place) works against either. Health answers are in the status
code, as the specification says; failures are ``ErrorBody`` JSON (see ``serving.errors``).
Bodies may use the binary tensor data extension (``serving.v2_codec``); the statistics and
repository index extensions read the backend's own counters and models.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from hybridai.protocol.errors import ApiError, ErrorBody, ErrorCode
from hybridai.protocol.names import InvalidName, check_name
from hybridai.protocol.v2 import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ModelReady,
    ServerMetadata,
)
from hybridai.protocol.v2_stats import (
    ModelStatistics,
    ModelStatisticsResponse,
    RepositoryIndexRequest,
    RepositoryModel,
)
from hybridai.serving.errors import validation_error
from hybridai.serving.v2_codec import HEADER_LENGTH, decode_request, encode_response

# What server metadata announces: the extensions this router serves for every backend.
EXTENSIONS = ("binary_tensor_data", "statistics", "model_repository")


class InferenceBackend(Protocol):
    """What serves v2 requests; unknown models and versions raise ``ApiError`` 404."""

    def server_metadata(self) -> ServerMetadata: ...

    def server_ready(self) -> bool: ...

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata: ...

    def model_ready(self, name: str, version: str | None) -> bool: ...

    async def infer(
        self, name: str, version: str | None, request: InferenceRequest
    ) -> InferenceResponse: ...

    def model_statistics(self, name: str | None, version: str | None) -> list[ModelStatistics]:
        """Every model version's counters (``name`` None), or one model's; 404 when unknown."""
        ...

    def repository_index(self, ready: bool) -> list[RepositoryModel]:
        """The model versions this server can serve (only the ready ones when ``ready``)."""
        ...


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request, or not ready"},
    404: {"model": ErrorBody, "description": "Unknown model or version"},
    500: {"model": ErrorBody, "description": "Internal error (see the server log)"},
}


def _json(model: BaseModel, status: int = 200) -> Response:
    """Serialize without null fields: v2 clients expect absent optionals to be absent."""
    content = model.model_dump_json(exclude_none=True)
    return Response(content, status_code=status, media_type="application/json")


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Inline ``$defs`` so the schema can sit inside an OpenAPI operation."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_INFER_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inline_refs(InferenceRequest.model_json_schema())},
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": f"A JSON header of {HEADER_LENGTH} bytes, then the inputs' "
                    "binary data (the binary tensor data extension)",
                }
            },
        },
    }
}


def _names(name: str, version: str | None) -> None:
    """Model names and versions are forwarded in URLs and looked up: only allowed names pass."""
    try:
        check_name("model name", name)
        if version is not None:
            check_name("model version", version)
    except InvalidName as exc:
        raise ApiError(400, ErrorCode.INVALID_NAME, str(exc)) from None


async def answer_infer(
    backend: InferenceBackend,
    name: str,
    version: str | None,
    header: Callable[[str], str | None],
    body: Callable[[], Awaitable[bytes]],
) -> tuple[bytes, dict[str, str]]:
    """One v2 infer, from the request's path, headers and body to the answer's body and headers.

    The routes below and ``serving.v2_fast`` (the hot path outside the framework) both call it.
    """
    _names(name, version)
    encoding = header("content-encoding") or "identity"
    if encoding.lower() != "identity":  # tritonclient's optional gzip/deflate bodies
        raise ApiError(
            415,
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"request bodies with Content-Encoding '{encoding[:32]}' are not accepted; send "
            "the body uncompressed (tritonclient: no request_compression_algorithm)",
        )
    parsed, binary = decode_request(await body(), header(HEADER_LENGTH))
    return encode_response(await backend.infer(name, version, parsed), binary)


def v2_router(backend: InferenceBackend) -> APIRouter:
    """Build the v2 routes; mount with ``app.include_router`` plus ``install_error_handlers``."""
    router = APIRouter(tags=["Open Inference Protocol v2"], responses=_ERRORS)

    @router.get("/v2/health/live", response_model=ServerLive)
    async def server_live() -> Response:
        return _json(ServerLive(live=True))

    @router.get("/v2/health/ready", response_model=ServerReady)
    def server_ready() -> Response:
        if not backend.server_ready():
            raise ApiError(
                400,
                ErrorCode.MODEL_NOT_READY,
                "the server is not ready yet (models still loading); retry shortly",
            )
        return _json(ServerReady(ready=True))

    @router.get("/v2", response_model=ServerMetadata)
    def server_metadata() -> Response:
        metadata = backend.server_metadata()
        extensions = [
            *metadata.extensions,
            *(e for e in EXTENSIONS if e not in metadata.extensions),
        ]
        return _json(metadata.model_copy(update={"extensions": extensions}))

    def metadata(name: str, version: str | None) -> Response:
        _names(name, version)
        return _json(backend.model_metadata(name, version))

    def ready(name: str, version: str | None) -> Response:
        _names(name, version)
        if not backend.model_ready(name, version):
            which = f"model '{name}'" + (f" version '{version}'" if version else "")
            raise ApiError(400, ErrorCode.MODEL_NOT_READY, f"{which} is loading; retry shortly")
        return _json(ModelReady(name=name, ready=True))

    async def infer(request: Request, name: str, version: str | None) -> Response:
        content, headers = await answer_infer(
            backend, name, version, request.headers.get, request.body
        )
        return Response(content, headers=headers)

    def statistics(name: str | None, version: str | None) -> Response:
        if name is not None:
            _names(name, version)
        return _json(ModelStatisticsResponse(model_stats=backend.model_statistics(name, version)))

    @router.get("/v2/models/stats", response_model=ModelStatisticsResponse)
    def all_statistics() -> Response:
        return statistics(None, None)

    @router.get("/v2/models/{name}/stats", response_model=ModelStatisticsResponse)
    def model_statistics(name: str) -> Response:
        return statistics(name, None)

    @router.get(
        "/v2/models/{name}/versions/{version}/stats", response_model=ModelStatisticsResponse
    )
    def model_version_statistics(name: str, version: str) -> Response:
        return statistics(name, version)

    @router.post("/v2/repository/index", response_model=list[RepositoryModel])
    async def repository_index(request: Request) -> Response:
        body = await request.body()
        try:
            asked = RepositoryIndexRequest.model_validate_json(body or b"{}")
        except ValidationError as exc:
            raise validation_error(exc.errors(include_url=False)) from None
        models = await run_in_threadpool(backend.repository_index, asked.ready)
        content = b"[" + b",".join(m.model_dump_json().encode() for m in models) + b"]"
        return Response(content, media_type="application/json")

    @router.get("/v2/models/{name}", response_model=ModelMetadata)
    def model_metadata(name: str) -> Response:
        return metadata(name, None)

    @router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata)
    def model_version_metadata(name: str, version: str) -> Response:
        return metadata(name, version)

    @router.get("/v2/models/{name}/ready", response_model=ModelReady)
    def model_ready(name: str) -> Response:
        return ready(name, None)

    @router.get("/v2/models/{name}/versions/{version}/ready", response_model=ModelReady)
    def model_version_ready(name: str, version: str) -> Response:
        return ready(name, version)

    @router.post(
        "/v2/models/{name}/infer",
        response_model=InferenceResponse,
        openapi_extra=_INFER_OPENAPI,
    )
    async def model_infer(request: Request, name: str) -> Response:
        return await infer(request, name, None)

    @router.post(
        "/v2/models/{name}/versions/{version}/infer",
        response_model=InferenceResponse,
        openapi_extra=_INFER_OPENAPI,
    )
    async def model_version_infer(request: Request, name: str, version: str) -> Response:
        return await infer(request, name, version)

    return router
