"""The browser session: the access token in a cookie the page's scripts cannot read.

The cookie is HttpOnly (no script reads the token), Secure (TLS only) and SameSite=Strict (no
other site's page sends it), and every form that acts carries a CSRF token derived from the
session token, so a forged cross-site post fails even where a browser ignores SameSite.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from fastapi import Request, Response

from hybridai.cloud.auth import Principal, cloud_of
from hybridai.cloud.people import users
from hybridai.protocol.errors import ApiError, ErrorCode

COOKIE = "hybridai_session"
CSRF_FIELD = "csrf"


def set_session(response: Response, token: str, expires_at: float) -> None:
    max_age = max(1, int(expires_at - time.time()))
    response.set_cookie(
        COOKIE,
        token,
        max_age=max_age,
        path="/ui",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/ui", secure=True, httponly=True, samesite="strict")


def token_of(request: Request) -> str | None:
    token = request.cookies.get(COOKIE, "").strip()
    return token or None


def signed_in(request: Request) -> Principal:
    """The person behind the session cookie (401 without a valid one); kept for the audit log."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = token_of(request)
    if token is None:
        raise ApiError(401, ErrorCode.UNAUTHENTICATED, "sign in at /ui/login")
    cloud = cloud_of(request)
    with cloud.session() as session:
        person = users.authenticate(
            session, users.token_keys(cloud.settings.data_dir), token, time.time()
        )
    if person is None:
        raise ApiError(401, ErrorCode.UNAUTHENTICATED, "the session expired: sign in again")
    who = Principal("user", person.name, person.role, person.scope, person)
    request.state.principal = who
    return who


def csrf_token(request: Request) -> str:
    """A per-session token for forms: an HMAC of the session token (no server state)."""
    token = token_of(request) or ""
    key = hashlib.sha256(b"hybridai-dashboard-csrf").digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent, csrf_token(request)):
        raise ApiError(
            403,
            ErrorCode.FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        )
