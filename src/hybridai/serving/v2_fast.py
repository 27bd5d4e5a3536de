"""The v2 infer routes without the framework's toll: the hot path of a serving app.

``POST /v2/models/{name}[/versions/{version}]/infer`` is the one route a busy server answers
thousands of times a second, and with a cheap model most of its time went to the framework:
its own middleware (telemetry checks, error pages), route matching, dependency solving,
exception middleware, response classes. ``FastInferApp`` (a FastAPI app) sends exactly those
two routes through the app's own middleware (credentials, body limits, trace and request log:
the same classes, same settings, same order) to ``V2FastInfer``, which answers straight from
the backend with the same codec (``serving.v2_codec``: JSON and the binary tensor extension),
the same name rules and the same ``ErrorBody`` answers as ``serving.v2_routes``; those routes
stay mounted, for the OpenAPI document and for apps that do not take this path. It sets the
scope's ``route`` so the request log names the route template as before. An exception other
than ``ApiError`` propagates to the app's error middleware (a logged 500). An app whose access
check is a route dependency (the cloud's) passes it as ``admit``, run before the body is read.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridai.protocol.errors import ApiError, ErrorBody
from hybridai.serving.v2_routes import InferenceBackend, answer_infer

__all__ = ["INFER_PATH", "Admit", "FastInferApp", "V2FastInfer"]

Admit = Callable[[Scope], Awaitable[None]]  # raises ApiError (401, 403) for a refused caller
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


class _Route:
    """What the request log reads from the scope's ``route``: the template it answered."""

    __slots__ = ("path", "path_format")

    def __init__(self, template: str) -> None:
        self.path = self.path_format = template


_UNVERSIONED = _Route("/v2/models/{name}/infer")
_VERSIONED = _Route("/v2/models/{name}/versions/{version}/infer")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _error_body(exc: ApiError) -> bytes:
    body = ErrorBody(error=exc.message, code=exc.code)
    return body.__pydantic_serializer__.to_json(body)


async def _answer(send: Send, status: int, content: bytes, headers: dict[str, str]) -> None:
    raw: list[tuple[bytes, bytes]] = [(b"content-length", str(len(content)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    start: Message = {"type": "http.response.start", "status": status, "headers": raw}
    await send(start)
    await send({"type": "http.response.body", "body": content})


class V2FastInfer:
    """Answers v2 infer requests from ``backend``; passes everything else to ``app``."""

    def __init__(self, app: ASGIApp, backend: InferenceBackend, admit: Admit | None = None) -> None:
        self.app = app
        self.backend = backend
        self.admit = admit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = INFER_PATH.fullmatch(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        name, version = match.group(1), match.group(2)
        scope["route"] = _VERSIONED if version is not None else _UNVERSIONED
        scope["path_params"] = {"name": name} | ({"version": version} if version else {})
        headers = scope.get("headers") or ()

        def header(key: str) -> str | None:
            wanted = key.lower().encode("latin-1")
            for found, value in headers:
                if found == wanted:
                    return str(value.decode("latin-1"))
            return None

        try:
            if self.admit is not None:
                await self.admit(scope)
            content, answer_headers = await answer_infer(
                self.backend, name, version, header, lambda: _read_body(receive)
            )
        except ApiError as exc:
            await _answer(send, exc.status, _error_body(exc), {"content-type": "application/json"})
            return
        except ConnectionError:
            return  # nobody is left to answer
        await _answer(send, 200, content, answer_headers)


def is_infer(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and INFER_PATH.fullmatch(scope["path"]) is not None
    )


class FastInferApp(FastAPI):
    """A FastAPI app whose v2 infer requests pass its own middleware only, then the backend.

    Call ``serve_infer_from(backend)`` once (with ``admit``, the access check the v2 routes'
    dependencies make); the chain is built at the first request, after every
    ``add_middleware``, from the app's middleware list exactly as the framework builds it.
    """

    _infer_backend: InferenceBackend | None = None
    _infer_admit: Admit | None = None
    _infer_chain: ASGIApp | None = None

    def serve_infer_from(self, backend: InferenceBackend, admit: Admit | None = None) -> None:
        self._infer_backend = backend
        self._infer_admit = admit

    def _chain(self, backend: InferenceBackend) -> ASGIApp:
        app: ASGIApp = V2FastInfer(super().__call__, backend, self._infer_admit)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        backend = self._infer_backend
        if backend is None or not is_infer(scope):
            await super().__call__(scope, receive, send)
            return
        if self._infer_chain is None:
            self._infer_chain = self._chain(backend)
        if self.root_path:
            scope["root_path"] = self.root_path
        scope["app"] = self
        await self._infer_chain(scope, receive, send)
