"""Every failure of a hybridai HTTP API leaves as ``ErrorBody`` JSON with a stable code.

Clients switch on ``code`` and show ``error`` to people; nothing a request does can take the
process down, and unexpected failures are logged with their traceback and answered with 500.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hybridai.protocol.errors import ApiError, ErrorBody, ErrorCode

logger = logging.getLogger("hybridai.serving")

_MAX_REPORTED = 3
_HTTP_CODES: dict[int, ErrorCode] = {
    401: ErrorCode.UNAUTHENTICATED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.CONFLICT,
}


def error_response(status: int, code: ErrorCode, message: str, **kwargs: Any) -> JSONResponse:
    body = ErrorBody(error=message, code=code).model_dump(mode="json")
    return JSONResponse(body, status_code=status, **kwargs)


def summarize_validation_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Pydantic errors as one line: "where: what" for the first few, and how many more."""
    errors = list(errors)
    parts = []
    for err in errors[:_MAX_REPORTED]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = len(errors) - _MAX_REPORTED
    suffix = f" (and {more} more)" if more > 0 else ""
    return "; ".join(parts) + suffix


def validation_error(errors: Iterable[Mapping[str, Any]]) -> ApiError:
    """``malformed_json`` when the body is not JSON at all, else ``bad_request``."""
    errors = list(errors)
    if any(err.get("type") == "json_invalid" for err in errors):
        detail = "; ".join(str(e.get("ctx", {}).get("error", e.get("msg"))) for e in errors)
        return ApiError(
            400, ErrorCode.MALFORMED_JSON, f"the request body is not valid JSON ({detail})"
        )
    return ApiError(
        400,
        ErrorCode.BAD_REQUEST,
        f"the request does not match the schema: {summarize_validation_errors(errors)}",
    )


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    error = validation_error(exc.errors())
    return error_response(error.status, error.code, error.message)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, ErrorCode.INTERNAL if status >= 500 else ErrorCode.BAD_REQUEST)
    method, path = request.method, request.url.path
    if status == 404 and exc.detail == "Not Found":
        message = f"no route {method} {path}; the API is described at /docs and /openapi.json"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{path} does not accept {method}; allowed: {allowed or 'none'}"
    else:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return error_response(status, code, message, headers=exc.headers)


def _internal_response() -> JSONResponse:
    return error_response(
        500, ErrorCode.INTERNAL, "internal server error; the server log has the details"
    )


async def _outer_exception(request: Request, exc: Exception) -> JSONResponse:
    """For failures in middleware outside ours: Starlette logs them and re-raises to the server."""
    return _internal_response()


class _InternalErrorMiddleware:
    """Turns any exception that escaped the handlers into a logged 500, and never re-raises."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # the status line is out; all that is left is to close the connection
                return
            await _internal_response()(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Map every failure of ``app`` to ``ErrorBody`` JSON; call once, after adding middleware.

    Exceptions raised by routes and inner middleware become a logged 500 without reaching the
    server; middleware added later still answers JSON, but the server logs those exceptions.
    """
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(Exception, _outer_exception)
    app.add_middleware(_InternalErrorMiddleware)
