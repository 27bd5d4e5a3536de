"""``POST /api/v1/streams/{stream}/records`` without the framework's toll.

A busy site posts batches of a thousand records many times a second; past the store's own
append, most of a request's time went to the framework (route matching, dependency solving,
its middleware, response classes) and to the thread hops around them. ``IngestRoute`` answers
this one route from ``answer_ingest``, which the mounted FastAPI route (kept for the OpenAPI
document) calls too: the same checks in the same order, the same error codes. Like the v2
infer route (``serving.v2_fast``), it runs inside the app's own middleware (site keys, body
limit, trace and request log, the error middleware: same classes, same order), sets the
scope's ``route`` so the request log names the template, and lets any exception other than
``ApiError`` reach the error middleware (a logged 500).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import anyio.to_thread
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridai.edge.ingest import formats
from hybridai.edge.ingest.schemas import SchemaViolation
from hybridai.edge.store.records import AppendResult, InvalidRecord
from hybridai.protocol.errors import ApiError, ErrorBody, ErrorCode
from hybridai.protocol.names import InvalidName, check_name

if TYPE_CHECKING:
    from hybridai.edge.ingest.intake import Ingest

__all__ = ["ROUTE", "IngestResult", "IngestRoute", "answer_ingest", "is_ingest"]

ROUTE = "/api/v1/streams/{stream}/records"
STREAM = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PATH = re.compile(r"/api/v1/streams/([^/]+)/records")
Limits = Callable[[], formats.DecodeLimits]


class IngestResult(BaseModel):
    stream: str
    accepted: int
    duplicates: int


def _decode_and_write(
    ingest: Ingest, stream: str, content_type: str | None, body: bytes, limits: Limits
) -> AppendResult:
    """Decode a batch body (JSON, MessagePack or Arrow IPC) and store it; off the event loop."""
    decoded = formats.decode(content_type, body, limits())
    if isinstance(decoded, list):
        return ingest.write(stream, decoded)
    return ingest.write_table(stream, decoded)


async def answer_ingest(
    ingest: Ingest,
    limits: Limits,
    stream: str,
    content_type: str | None,
    body: Callable[[], Awaitable[bytes]],
) -> IngestResult:
    """Store one batch body, from the request's path, type and body to the answer (or ApiError).

    The stream's name first (the names allow-list, then this route's own rule), then the
    format (refused before the body is read), then the body, stored all or nothing.
    """
    try:
        check_name("stream", stream)
    except InvalidName as exc:
        raise ApiError(400, ErrorCode.INVALID_NAME, str(exc)) from None
    if not STREAM.fullmatch(stream):
        raise ApiError(
            400,
            ErrorCode.BAD_REQUEST,
            f"stream name '{stream}' is invalid: use lowercase letters, digits and _, "
            "starting with a letter",
        )
    try:  # refuse an unknown format before reading the body
        formats.media_type(content_type)
    except formats.UnsupportedFormat as exc:
        raise ApiError(415, ErrorCode.UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
    raw = await body()
    try:
        result = await anyio.to_thread.run_sync(
            _decode_and_write, ingest, stream, content_type, raw, limits
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


class _Route:
    """What the request log reads from the scope's ``route``: the template it answered."""

    __slots__ = ("path", "path_format")

    def __init__(self, template: str) -> None:
        self.path = self.path_format = template


_TEMPLATE = _Route(ROUTE)
_JSON = [(b"content-type", b"application/json")]


def is_ingest(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and _PATH.fullmatch(scope["path"]) is not None
    )


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, content: bytes) -> None:
    headers = [(b"content-length", str(len(content)).encode()), *_JSON]
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": content})


class IngestRoute:
    """Answers ingest requests into ``ingest``; passes every other request to ``app``."""

    def __init__(self, app: ASGIApp, ingest: Ingest, limits: Limits) -> None:
        self.app = app
        self.ingest = ingest
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        stream = match.group(1)
        scope["route"] = _TEMPLATE
        scope["path_params"] = {"stream": stream}
        content_type = None
        for key, value in scope.get("headers") or ():
            if key == b"content-type":
                content_type = value.decode("latin-1")
                break
        try:
            result = await answer_ingest(
                self.ingest, self.limits, stream, content_type, lambda: _read_body(receive)
            )
        except ApiError as exc:
            error = ErrorBody(error=exc.message, code=exc.code)
            await _answer(send, exc.status, error.__pydantic_serializer__.to_json(error))
            return
        except ConnectionError:
            return  # nobody is left to answer
        await _answer(send, 200, result.__pydantic_serializer__.to_json(result))
