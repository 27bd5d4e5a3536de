"""People routes: login and logout, users, MFA enrollment, API tokens for automation."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hybridai.cloud.auth import Principal, cloud_of, principal, require
from hybridai.cloud.people import bootstrap, users
from hybridai.cloud.people.login_throttle import StoredLoginThrottle
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.people import (
    ApiTokenCreated,
    ApiTokenInfo,
    ApiTokenRequest,
    BootstrapRevoked,
    LoginRequest,
    LoginResponse,
    MfaCode,
    MfaEnrollment,
    NewUser,
    UserInfo,
    Whoami,
)
from hybridai.serving.errors import error_response

router = APIRouter(prefix="/api/v1", tags=["people"])


def _throttle(request: Request) -> StoredLoginThrottle:
    """Counted in the metadata store: every replica behind a load balancer sees every miss."""
    throttle: StoredLoginThrottle | None = getattr(request.app.state, "login_throttle", None)
    if throttle is None:
        throttle = StoredLoginThrottle(cloud_of(request).engine)
        request.app.state.login_throttle = throttle
    return throttle


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/auth/login", response_model=LoginResponse)
def login(body: LoginRequest, request: Request) -> Response:
    """Exchange username, password (and TOTP code) for a short-lived access token."""
    request.state.audit_actor = body.username[:200]
    request.state.audit_target = f"user={body.username[:200]}"
    cloud = cloud_of(request)
    try:
        with cloud.session() as session:
            answer = users.login(
                session,
                users.token_keys(cloud.settings.data_dir),
                _throttle(request),
                body.username,
                body.password,
                body.code,
                _client(request),
                time.time(),
                cloud.settings.access_token_ttl_s,
            )
    except users.Throttled as exc:
        wait = max(1, int(exc.retry_after + 0.999))
        return error_response(
            429,
            ErrorCode.TOO_MANY_ATTEMPTS,
            f"too many failed logins for this user or address: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    request.state.principal = Principal("user", answer.username, answer.role, answer.scope)
    return JSONResponse(answer.model_dump(mode="json"))


@router.post("/auth/logout", status_code=204)
def logout(request: Request) -> Response:
    """Revoke the access token this request carries."""
    who = require(request, "account")
    if who.person is None:
        raise ApiError(400, ErrorCode.BAD_REQUEST, "only people log out")
    with cloud_of(request).session() as session:
        users.logout(session, who.person)
    return Response(status_code=204)


@router.get("/auth/whoami")
def whoami(request: Request) -> Whoami:
    who = principal(request)
    return Whoami(name=who.name, kind=who.kind, role=who.role, scope=who.scope)


@router.post("/users", status_code=201)
def add_user(body: NewUser, request: Request) -> UserInfo:
    who = require(request, "admin")
    request.state.audit_target = f"user={body.name}"
    with cloud_of(request).session() as session:
        return users.add_user(session, body.name, body.role, body.password, who.name, time.time())


@router.get("/users")
def list_users(request: Request) -> list[UserInfo]:
    require(request, "admin")
    with cloud_of(request).session() as session:
        return users.list_users(session)


@router.post("/users/{name}/disable")
def disable_user(name: str, request: Request) -> UserInfo:
    require(request, "admin")
    with cloud_of(request).session() as session:
        return users.disable_user(session, name)


def _self_or_admin(request: Request, name: str) -> Principal:
    """MFA is one's own business (an admin may reset someone's)."""
    who = require(request, "account")
    if who.name == name and who.person is not None:
        return who
    if who.scope == "full" and who.role == "admin":
        return who
    raise ApiError(
        403,
        ErrorCode.FORBIDDEN,
        f"'{who.name}' may not manage the second factor of '{name[:80]}': log in as that user",
    )


@router.post("/users/{name}/mfa", status_code=201)
def begin_mfa(name: str, request: Request) -> MfaEnrollment:
    """A new TOTP secret and its otpauth:// URI, shown once; confirm it with a code."""
    _self_or_admin(request, name)
    with cloud_of(request).session() as session:
        return users.begin_mfa(session, name)


@router.post("/users/{name}/mfa/confirm")
def confirm_mfa(name: str, body: MfaCode, request: Request) -> UserInfo:
    _self_or_admin(request, name)
    with cloud_of(request).session() as session:
        return users.confirm_mfa(session, name, body.code, time.time())


@router.post("/api-tokens", status_code=201)
def create_api_token(body: ApiTokenRequest, request: Request) -> ApiTokenCreated:
    require(request, "admin")
    request.state.audit_target = f"token={body.name} role={body.role}"
    with cloud_of(request).session() as session:
        return users.create_api_token(session, body.name, body.role, time.time())


@router.get("/api-tokens")
def list_api_tokens(request: Request) -> list[ApiTokenInfo]:
    require(request, "admin")
    with cloud_of(request).session() as session:
        return users.list_api_tokens(session)


@router.post("/api-tokens/bootstrap/revoke")
def revoke_bootstrap_token(request: Request) -> BootstrapRevoked:
    """Revoke the bootstrap admin token for good, once an admin with MFA exists (409 before)."""
    require(request, "admin")
    request.state.audit_target = f"token={bootstrap.NAME}"
    cloud = cloud_of(request)
    with cloud.session() as session:
        return BootstrapRevoked(revoked=bootstrap.revoke(session, cloud.settings.admin_token_path))


@router.delete("/api-tokens/{token_id}")
def revoke_api_token(token_id: str, request: Request) -> ApiTokenInfo:
    require(request, "admin")
    with cloud_of(request).session() as session:
        return users.revoke_api_token(session, token_id)
