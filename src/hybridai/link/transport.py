"""The one place that builds hybridai's servers and HTTP clients.

Every process serves through ``serve`` and every edge-to-cloud or CLI-to-cloud call goes
through ``async_client``/``client``, so transport security (TLS 1.3, mTLS) and connection
settings change here and nowhere else.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

import httpx

from hybridai.link.tls import ServerTls, server_context
from hybridai.observability import trace

# Servers keep idle connections longer than any client interval (heartbeat, poll, sync):
# a keep-alive shorter than the heartbeat drops requests on closed connections.
SERVER_KEEP_ALIVE_S = 75
CLIENT_KEEP_ALIVE_S = 30.0
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def server_config(
    app: Any,
    host: str,
    port: int,
    *,
    log_level: str = "warning",
    tls: ServerTls | ssl.SSLContext | None = None,
    lifespan: Literal["on", "off"] = "on",
) -> Any:
    """A uvicorn configuration for ``app`` on ``host:port``; with ``tls``, mTLS 1.3 only.

    Under TLS the HTTP protocol is ``TlsHttpToolsProtocol``, which hands the verified client
    certificate to the app as the ASGI TLS extension (the only source of a device's identity).
    ``tls`` is the files, or a context already made (one the caller reloads on renewal).
    ``lifespan="off"`` for a second listener of an app whose first one runs its lifespan.
    """
    import uvicorn

    extra: dict[str, Any] = {}
    if tls is not None:
        from hybridai.link.asgi_tls import TlsHttpToolsProtocol

        def context(_config: Any, _default: Any) -> ssl.SSLContext:
            return tls if isinstance(tls, ssl.SSLContext) else server_context(tls)

        extra = {"http": TlsHttpToolsProtocol, "ssl_context_factory": context}
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=SERVER_KEEP_ALIVE_S,
        access_log=False,
        log_config=None,  # the process's logging (observability.logs) formats uvicorn's lines
        lifespan=lifespan,
        **extra,
    )


def server(
    app: Any, host: str, port: int, *, log_level: str = "warning", tls: ServerTls | None = None
) -> Any:
    """A uvicorn server for ``app``; ``.run()`` serves, ``.should_exit = True`` stops it."""
    import uvicorn

    return uvicorn.Server(server_config(app, host, port, log_level=log_level, tls=tls))


def serve(
    app: Any, host: str, port: int, *, log_level: str = "warning", tls: ServerTls | None = None
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvicorn handles both and drains in-flight requests)."""
    server(app, host, port, log_level=log_level, tls=tls).run()


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _forward_trace(request: httpx.Request) -> None:
    """Every call continues the trace of the work that makes it (W3C ``traceparent``)."""
    request.headers.update(trace.outgoing())


def _forward_trace_sync(request: httpx.Request) -> None:
    request.headers.update(trace.outgoing())


def _limits() -> httpx.Limits:
    return httpx.Limits(max_keepalive_connections=8, keepalive_expiry=CLIENT_KEEP_ALIVE_S)


def async_client(
    base_url: str,
    *,
    token: str | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    verify: ssl.SSLContext | bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A client; ``verify`` is a context from ``link.tls.client_context`` for the platform CA.

    ``transport`` replaces the network (httpx's own seam): ``httpx.MockTransport(handler)`` or
    ``httpx.ASGITransport(app)`` in tests, a simulated link in the simulator.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        headers=_headers(token),
        timeout=timeout,
        limits=_limits(),
        verify=verify,
        transport=transport,
        event_hooks={"request": [_forward_trace]},
    )


def client(
    base_url: str,
    *,
    token: str | None = None,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    verify: ssl.SSLContext | bool = True,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers=_headers(token),
        timeout=timeout,
        limits=_limits(),
        verify=verify,
        transport=transport,
        event_hooks={"request": [_forward_trace_sync]},
    )
