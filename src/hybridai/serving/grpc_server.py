"""The Open Inference Protocol's gRPC service (GRPCInferenceService) over any backend.

The edge and the cloud serve it next to their REST routes, on the same backend object, so a
gRPC request is placed, run, counted and explained exactly like a REST one (the placement's
reasons come back in the response's ``parameters``). It runs on grpc.aio in the app's event
loop. ``grpc`` and the generated modules are imported only when a server starts: a process
with no gRPC port pays nothing for it (the edge's idle memory budget).

Who may call is the caller's business (``Admit``): it reads the request's metadata (an
``authorization`` entry, as the HTTP header). With TLS the server presents its certificate
(a renewed one from the next connection on) but asks for none: grpcio cannot ask for a client
certificate without requiring one. Health probes stay open, as over REST. Failures map to
gRPC status codes (404 -> NOT_FOUND, 400 -> INVALID_ARGUMENT, 401 -> UNAUTHENTICATED, ...)
with the same message as the REST error body; the stable code rides in the trailing metadata
``hybridai-error-code``. Each call continues the caller's ``traceparent`` metadata (or starts
a trace), names it in the trailing metadata and logs one line, as the HTTP faces do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from starlette.concurrency import run_in_threadpool

from hybridai.link.tls import ServerTls
from hybridai.observability import trace
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.names import InvalidName, check_name
from hybridai.protocol.v2 import TensorMetadata
from hybridai.serving import grpc_codec
from hybridai.serving.v2_routes import InferenceBackend

log = logging.getLogger(__name__)

Need = Literal["infer", "read"]
# (what the call needs, the request's metadata) -> None to admit; raises ApiError (401, 403,
# 503) to refuse.
Admit = Callable[[Need, Mapping[str, str]], Awaitable[None]]
ERROR_CODE_KEY = "hybridai-error-code"
_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    413: "RESOURCE_EXHAUSTED",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def status_name(http_status: int) -> str:
    """The gRPC status (its ``grpc.StatusCode`` name) for an ``ApiError``'s HTTP status."""
    if http_status in _STATUS_NAMES:
        return _STATUS_NAMES[http_status]
    return "INVALID_ARGUMENT" if 400 <= http_status < 500 else "INTERNAL"


async def admit_anyone(need: Need, metadata: Mapping[str, str]) -> None:
    """For lab benches and tests: no credentials asked."""


def _names(name: str, version: str) -> str | None:
    try:
        check_name("model name", name)
        if version:
            check_name("model version", version)
    except InvalidName as exc:
        raise ApiError(400, ErrorCode.INVALID_NAME, str(exc)) from None
    return version or None


def _log(rpc: str, status: str, started: float) -> None:
    """One line per call, as the HTTP faces log theirs (debug; failures of the server: warning)."""
    seconds = time.perf_counter() - started
    level = logging.WARNING if status == "INTERNAL" else logging.DEBUG
    log.log(
        level,
        "gRPC %s %s %.1fms",
        rpc,
        status,
        seconds * 1000.0,
        extra={"route": f"grpc:{rpc}", "status": status, "duration_ms": round(seconds * 1e3, 2)},
    )


class _Servicer:
    """The six RPCs; each admits the caller, calls the backend and maps its errors."""

    def __init__(
        self, backend: InferenceBackend, admit: Admit, max_elements: int, pb2: Any
    ) -> None:
        self.backend = backend
        self.admit = admit
        self.max_elements = max_elements
        self.pb2 = pb2

    async def _call(
        self, context: Any, rpc: str, need: Need | None, work: Callable[[], Awaitable[Any]]
    ) -> Any:
        import grpc

        metadata = {str(k).lower(): str(v) for k, v in context.invocation_metadata()}
        span = trace.begin(metadata.get(trace.HEADER))  # the caller's trace, or a new one
        started = time.perf_counter()
        try:
            if need is not None:
                await self.admit(need, metadata)
            answer = await work()
        except ApiError as exc:
            failure: ApiError = exc
        except Exception:
            log.exception("gRPC call from %s failed", context.peer())
            failure = ApiError(500, ErrorCode.INTERNAL, "internal error (see the server log)")
        else:
            context.set_trailing_metadata(((trace.HEADER, span.traceparent),))
            _log(rpc, "OK", started)
            return answer
        status = status_name(failure.status)
        context.set_trailing_metadata(
            ((trace.HEADER, span.traceparent), (ERROR_CODE_KEY, failure.code.value))
        )
        _log(rpc, status, started)
        await context.abort(getattr(grpc.StatusCode, status), failure.message)

    async def ServerLive(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return self.pb2.ServerLiveResponse(live=True)

        return await self._call(context, "ServerLive", None, work)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            return self.pb2.ServerReadyResponse(ready=self.backend.server_ready())

        return await self._call(context, "ServerReady", None, work)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            meta = self.backend.server_metadata()
            return self.pb2.ServerMetadataResponse(
                name=meta.name, version=meta.version, extensions=meta.extensions
            )

        return await self._call(context, "ServerMetadata", "read", work)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            version = _names(request.name, request.version)
            ready = await run_in_threadpool(self.backend.model_ready, request.name, version)
            return self.pb2.ModelReadyResponse(ready=ready)

        return await self._call(context, "ModelReady", "read", work)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            version = _names(request.name, request.version)
            meta = await run_in_threadpool(self.backend.model_metadata, request.name, version)
            tensor = self.pb2.ModelMetadataResponse.TensorMetadata

            def one(t: TensorMetadata) -> Any:
                return tensor(name=t.name, datatype=t.datatype, shape=t.shape)

            return self.pb2.ModelMetadataResponse(
                name=meta.name,
                versions=meta.versions,
                platform=meta.platform,
                inputs=[one(t) for t in meta.inputs],
                outputs=[one(t) for t in meta.outputs],
            )

        return await self._call(context, "ModelMetadata", "read", work)

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        async def work() -> Any:
            version = _names(request.model_name, request.model_version)
            parsed = grpc_codec.request_from(request, self.max_elements)
            response = await self.backend.infer(request.model_name, version, parsed)
            if parsed.id and not response.id:
                response.id = parsed.id
            message = self.pb2.ModelInferResponse()
            grpc_codec.fill_response(message, response)
            return message

        return await self._call(context, "ModelInfer", "infer", work)


def _reloading_credentials(tls: ServerTls) -> Any:
    """TLS that picks up a renewed certificate for new connections, without a restart."""
    import grpc

    def configuration() -> Any:
        pair = (tls.key_file.read_bytes(), tls.cert_file.read_bytes())
        return grpc.ssl_server_certificate_configuration([pair], tls.ca_file.read_bytes())

    seen = [tls.cert_file.stat().st_mtime_ns]

    def fetch() -> Any:  # called before each new connection's handshake
        try:
            now = tls.cert_file.stat().st_mtime_ns
            if now == seen[0]:
                return None
            seen[0] = now
            return configuration()
        except OSError:
            return None  # mid-rotation: keep the current certificate

    return grpc.dynamic_ssl_server_credentials(configuration(), fetch)


class GrpcInferenceServer:
    """One grpc.aio server for a backend: ``await start()`` in the app's lifespan, ``stop()``."""

    def __init__(
        self,
        backend: InferenceBackend,
        host: str,
        port: int,
        *,
        admit: Admit,
        max_message_bytes: int,
        tls: ServerTls | None = None,
    ) -> None:
        self.backend = backend
        self.host = host
        self.port = port
        self.admit = admit
        self.max_message_bytes = max_message_bytes
        self.tls = tls
        self._server: Any = None

    async def start(self) -> int:
        """Listen; returns the bound port. Fails (``RuntimeError``) when the port is taken."""
        import grpc

        from hybridai.serving import grpc_predict_v2_pb2 as pb2
        from hybridai.serving import grpc_predict_v2_pb2_grpc as pb2_grpc

        limit = self.max_message_bytes
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),  # a second server on a taken port must fail
            ]
        )
        servicer = _Servicer(self.backend, self.admit, limit, pb2)
        pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
        address = f"{self.host}:{self.port}"
        if self.tls is not None:
            bound = server.add_secure_port(address, _reloading_credentials(self.tls))
        else:
            bound = server.add_insecure_port(address)
        if not bound:
            raise RuntimeError(f"cannot listen for gRPC on {address}: is the port taken?")
        await server.start()
        self._server = server
        scheme = "TLS" if self.tls is not None else "plaintext"
        log.info("gRPC inference on %s:%d (%s)", self.host, bound, scheme)
        return int(bound)

    async def stop(self, grace_s: float = 2.0) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await asyncio.shield(server.stop(grace_s))
