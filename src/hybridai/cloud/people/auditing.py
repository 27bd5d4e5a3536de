"""Every mutating call on the cloud API lands in the audit log: one middleware, one place.

Recorded: POST/PUT/PATCH/DELETE whatever their outcome, and any call answered 401, 403, 413 or
429 (refused attempts are what an audit is for). Not recorded: successful reads, successful
Open Inference Protocol inference calls (POST by the protocol's design, but they change
nothing), and a device's accepted routine reports (``ROUTINE``: heartbeats every few seconds
per device would bury the changes; the registry keeps the latest report and ``last_seen``).
The principal is what the auth layer put on ``request.state.principal``; routes may name a
better target or actor (``request.state.audit_target`` / ``audit_actor``, e.g. the username of
a refused login). The client address is the TCP peer, never a header a client sets.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridai.governance import audit

log = logging.getLogger("hybridai.cloud.audit")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ALWAYS = frozenset({401, 403, 413, 429})
ROUTINE = frozenset({"POST /api/v1/devices/{device_id}/status"})  # method and route template
_BODY_KEPT = 4096


def result_of(status: int) -> audit.Result:
    if status < 400:
        return "ok"
    if status in (401, 403, 429):
        return "denied"
    return "error" if status >= 500 else "refused"


def _recorded(method: str, path: str, status: int, template: str | None = None) -> bool:
    if status in ALWAYS:
        return True
    if method not in MUTATING:
        return False
    if status < 400 and f"{method} {template}" in ROUTINE:
        return False
    return not (path.startswith("/v2/") and status < 400)


def _detail(status: int, body: bytes) -> str:
    if status < 400 or not body:
        return ""
    try:
        parsed = json.loads(body)
        return f"{parsed['code']}: {parsed['error']}"
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


class AuditMiddleware:
    def __init__(self, app: ASGIApp, sessions: Callable[[], Session]) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        body = b""

        async def watching_send(message: Message) -> None:
            nonlocal status, body
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status >= 400:
                body = (body + message.get("body", b""))[:_BODY_KEPT]
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            route = getattr(scope.get("route"), "path", None)
            if _recorded(scope["method"], scope["path"], status, route):
                event = self._event(scope, status, body)
                await anyio.to_thread.run_sync(self._append, event)

    def _event(self, scope: Scope, status: int, body: bytes) -> audit.Event:
        state: dict[str, Any] = scope.get("state") or {}
        who = state.get("principal")
        route = scope.get("route")
        template = getattr(route, "path", None) or scope["path"]
        params = scope.get("path_params") or {}
        target = state.get("audit_target") or (
            ",".join(f"{k}={v}" for k, v in params.items()) or scope["path"]
        )
        client = scope.get("client")
        return audit.Event(
            actor=who.name if who is not None else state.get("audit_actor", "anonymous"),
            role=who.role if who is not None else "",
            action=f"{scope['method']} {template}",
            target=str(target),
            client=client[0] if client else "unknown",
            result=result_of(status),
            status=status,
            detail=_detail(status, body),
        )

    def _append(self, event: audit.Event) -> None:
        try:
            with self.sessions() as session:
                audit.append(session, event, time.time())
        except Exception:  # the action has happened; losing its record must not hide it
            log.exception("could not append to the audit log: %s", event)
