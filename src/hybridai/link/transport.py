"""The one place that builds hybridai's servers and HTTP clients.

Every process serves through ``serve`` and every edge-to-cloud or CLI-to-cloud call goes
through ``async_client``/``client``, so transport security (TLS 1.3, mTLS) and connection
settings change here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import httpx

# Servers keep idle connections longer than any client interval (heartbeat, poll, sync):
# a keep-alive shorter than the heartbeat drops requests on closed connections.
SERVER_KEEP_ALIVE_S = 75
CLIENT_KEEP_ALIVE_S = 30.0
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def server_config(app: Any, host: str, port: int, *, log_level: str = "warning") -> Any:
    """A uvicorn configuration for ``app`` on ``host:port``."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_keep_alive=SERVER_KEEP_ALIVE_S,
        access_log=False,
        lifespan="on",
    )


def serve(app: Any, host: str, port: int, *, log_level: str = "warning") -> None:
    """Serve ``app`` until SIGINT/SIGTERM (uvicorn handles both and drains in-flight requests)."""
    import uvicorn

    uvicorn.Server(server_config(app, host, port, log_level=log_level)).run()


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _limits() -> httpx.Limits:
    return httpx.Limits(max_keepalive_connections=8, keepalive_expiry=CLIENT_KEEP_ALIVE_S)


def async_client(
    base_url: str, *, token: str | None = None, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers=_headers(token), timeout=timeout, limits=_limits()
    )


def client(
    base_url: str, *, token: str | None = None, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT
) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers=_headers(token), timeout=timeout, limits=_limits()
    )
