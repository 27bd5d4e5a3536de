"""Request-body size limits for a whole API (cloud and edge), enforced before a route reads it.

A declared ``Content-Length`` over the limit is answered 413 at once; a body without one is
counted as it streams and cut off at the limit. Either way the answer is ``ErrorBody`` JSON
with the stable code ``payload_too_large``, whatever the route would have said.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridai.protocol.errors import ErrorCode
from hybridai.serving.errors import error_response

LimitFor = Callable[[str, str], int]  # (method, path) -> bytes allowed


class _TooLarge(Exception):
    pass


def _answer(limit: int) -> object:
    return error_response(
        413,
        ErrorCode.PAYLOAD_TOO_LARGE,
        f"request body too large: this route accepts at most {limit} bytes; send less, or split it",
    )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limit_for: LimitFor) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer(limit)(scope, receive, send)  # type: ignore[operator]
            return
        seen = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    over = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # the route turned our interruption into some other answer: replace it
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await _answer(limit)(scope, receive, send)  # type: ignore[operator]
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge:
            if not started:
                await _answer(limit)(scope, receive, send)  # type: ignore[operator]
