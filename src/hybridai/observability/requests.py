"""The HTTP request log and trace entry of a server, as one ASGI middleware.

Each request continues the caller's W3C ``traceparent`` (or starts a trace), answers with its
own ``traceparent`` header, and when it ends is logged in one line (method, route template,
status, duration, principal, trace id: never a body or a query) and handed to ``observe`` for
the metrics. The route is the template (``/api/v1/devices/{device_id}``), not the raw path:
label values stay bounded whatever paths clients send; an unrouted path counts as ``unmatched``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from hybridai.observability import trace

Observe = Callable[[str, str, int, float], None]  # method, route, status, seconds
UNMATCHED = "unmatched"
log = logging.getLogger("hybridai.requests")
_TRACE_HEADER = trace.HEADER.encode()


def route_of(scope: dict[str, Any]) -> str:
    """The template of the route that took the request (``unmatched`` when none did)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


def principal_of(scope: dict[str, Any]) -> str | None:
    found = (scope.get("state") or {}).get("principal")
    name = getattr(found, "name", None)
    return str(name) if name else None


class RequestLogMiddleware:
    """Trace, log and measure every HTTP request; ``level``: the log level of a success."""

    def __init__(self, app: Any, observe: Observe | None = None, level: int = logging.INFO) -> None:
        self.app, self.observe, self.level = app, observe, level

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers") or () if k == _TRACE_HEADER), b"")
        span = trace.begin(header.decode("latin-1"))
        started = time.perf_counter()
        status = 500  # unless the app answers

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or [])
                headers.append((trace.HEADER.encode(), span.traceparent.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self._done(scope, status, time.perf_counter() - started)

    def _done(self, scope: dict[str, Any], status: int, seconds: float) -> None:
        level = logging.WARNING if status >= 500 else self.level
        if self.observe is None and not log.isEnabledFor(level):
            return  # nobody counts it and the line would be dropped: build nothing
        method, route = str(scope.get("method", "")), route_of(scope)
        if self.observe is not None:
            self.observe(method, route, status, seconds)
        log.log(
            level,
            "%s %s %d %.1fms",
            method,
            route,
            status,
            seconds * 1000.0,
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000.0, 2),
                "principal": principal_of(scope),
            },
        )
