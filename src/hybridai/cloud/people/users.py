"""People: users with argon2id passwords and TOTP, logins, access tokens, API tokens.

Service functions take the session, the clock and (for logins) the throttle explicitly and
commit their own work; failures raise ``ApiError`` with a stable code and a message that says
what to do. A login answers a short-lived signed access token; privileged roles (admin,
operator) must present a TOTP code once MFA is enrolled, and until then get a token that only
lets them enroll it (scope ``mfa-enroll``).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hybridai.cloud.devices import fleet
from hybridai.cloud.people.secrets import hash_token
from hybridai.governance import access_tokens, mfa, passwords, rbac
from hybridai.governance.access_tokens import TokenKeys
from hybridai.governance.throttle import Throttle
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.people import (
    USER_NAME_PATTERN,
    ApiTokenCreated,
    ApiTokenInfo,
    LoginResponse,
    MfaEnrollment,
    UserInfo,
)
from hybridai.storage.tables import ApiTokenRow, RevokedAccessTokenRow, UserRow

_NAME = re.compile(USER_NAME_PATTERN)
ENROLL_TTL_S = 10 * 60.0
TOKEN_ID_LENGTH = 16
# Verified against when the user does not exist, so timing does not tell names apart.
_DUMMY_HASH = passwords.hash_password("not-a-real-password-0000")
_keys: dict[Path, TokenKeys] = {}
_keys_lock = threading.Lock()


class Throttled(Exception):
    """Too many failed logins for this user or address; retry after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"retry after {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Person:
    """Who an access token or API token speaks for."""

    name: str
    role: str
    scope: str
    via: str  # "access-token" or "api-token"
    jti: str | None = None
    expires_at: float | None = None


def token_keys(data_dir: Path) -> TokenKeys:
    """The access-token signing keys of the cloud whose data folder is ``data_dir``."""
    path = data_dir / "token.key"
    with _keys_lock:
        if path not in _keys:
            _keys[path] = access_tokens.load_or_create_keys(path)
        return _keys[path]


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"user name {name[:80]!r} is not valid: use 1-63 lowercase letters, digits, '.', "
            "'_', '@' or '-', starting with a letter or digit",
        )


def _check_role(role: str) -> None:
    if role not in rbac.ROLES:
        raise ApiError(
            400, ErrorCode.INVALID_INPUT, f"unknown role {role[:40]!r}: use one of {rbac.ROLES}"
        )


def _info(row: UserRow) -> UserInfo:
    return UserInfo(
        name=row.name,
        role=row.role,
        mfa_enabled=row.mfa_enabled,
        disabled=row.disabled,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _user(session: Session, name: str) -> UserRow:
    row = session.get(UserRow, name) if _NAME.match(name) else None
    if row is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"no user {name[:80]!r}: see `hybridai user list`")
    return row


def add_user(
    session: Session, name: str, role: str, password: str, by: str, now: float
) -> UserInfo:
    _check_name(name)
    _check_role(role)
    try:
        passwords.check_strength(password)
    except passwords.WeakPassword as exc:
        raise ApiError(400, ErrorCode.INVALID_INPUT, f"{exc}; choose a longer one") from None
    row = UserRow(
        name=name,
        role=role,
        password_hash=passwords.hash_password(password),
        mfa_enabled=False,
        disabled=False,
        created_at=now,
        created_by=by,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(409, ErrorCode.CONFLICT, f"user {name!r} exists already") from None
    return _info(row)


def list_users(session: Session) -> list[UserInfo]:
    return [_info(row) for row in session.scalars(select(UserRow).order_by(UserRow.name))]


def disable_user(session: Session, name: str) -> UserInfo:
    """Refuse the user's logins and every access token already issued to them, at once."""
    row = _user(session, name)
    row.disabled = True
    session.commit()
    return _info(row)


def login(
    session: Session,
    keys: TokenKeys,
    throttle: Throttle,
    username: str,
    password: str,
    code: str | None,
    client: str,
    now: float,
    ttl_s: float,
) -> LoginResponse:
    """Check password (and TOTP where enrolled) and sign an access token.

    Every miss counts against the username and the client address; locked keys raise
    ``Throttled`` before any password is checked. The same message answers an unknown user
    and a wrong password, so logins do not reveal who has an account.
    """
    keys_for = [f"user:{username.lower()}", f"addr:{client}"]
    wait = throttle.retry_after(keys_for, now)
    if wait > 0:
        raise Throttled(wait)
    row = session.get(UserRow, username) if _NAME.match(username) else None
    if not passwords.verify_password(row.password_hash if row else _DUMMY_HASH, password):
        throttle.failure(keys_for, now)
        raise ApiError(
            401, ErrorCode.UNAUTHENTICATED, "wrong username or password (or no such user)"
        )
    assert row is not None
    if row.disabled:
        raise ApiError(403, ErrorCode.FORBIDDEN, f"user {row.name!r} is disabled: ask an admin")
    scope = access_tokens.FULL
    ttl = ttl_s
    message = ""
    if row.mfa_enabled:
        if not code:
            raise ApiError(
                401,
                ErrorCode.MFA_REQUIRED,
                f"user {row.name!r} needs a TOTP code from their authenticator app: pass --code",
            )
        step = mfa.accepted_step(row.mfa_secret or "", code, now, row.mfa_last_step)
        if step is None or not _spend_step(session, row.name, step):
            throttle.failure(keys_for, now)
            raise ApiError(
                401,
                ErrorCode.MFA_REQUIRED,
                "the TOTP code is wrong, expired or was already used: wait for the next one",
            )
    elif row.role in rbac.MFA_REQUIRED:
        scope, ttl = access_tokens.MFA_ENROLL, min(ttl_s, ENROLL_TTL_S)
        message = (
            f"role {row.role} requires MFA: this token can only enroll it; run "
            f"`hybridai user mfa-enroll {row.name}`, then log in again with --code"
        )
    if passwords.needs_rehash(row.password_hash):
        row.password_hash = passwords.hash_password(password)
    session.commit()
    throttle.success(keys_for[0])
    token, claims = access_tokens.issue(keys, row.name, row.role, now, ttl, scope)
    return LoginResponse(
        access_token=token,
        expires_at=claims.exp,
        username=row.name,
        role=row.role,
        scope=cast(Any, scope),
        message=message,
    )


def _spend_step(session: Session, name: str, step: int) -> bool:
    """Record ``step`` as used unless a concurrent login already used it (or a later one)."""
    spent = cast(
        "CursorResult[Any]",
        session.execute(
            update(UserRow)
            .where(
                UserRow.name == name,
                or_(UserRow.mfa_last_step.is_(None), UserRow.mfa_last_step < step),
            )
            .values(mfa_last_step=step)
            .execution_options(synchronize_session=False)
        ),
    )
    session.commit()
    return spent.rowcount == 1


def begin_mfa(session: Session, name: str) -> MfaEnrollment:
    """A fresh TOTP secret for ``name`` (shown once); it counts only after ``confirm_mfa``.

    Re-enrolling replaces the secret: the old authenticator stops working once confirmed.
    """
    row = _user(session, name)
    secret = mfa.new_secret()
    row.mfa_secret = secret
    row.mfa_enabled = False
    row.mfa_last_step = None
    session.commit()
    return MfaEnrollment(
        name=row.name,
        secret=secret,
        otpauth_uri=mfa.provisioning_uri(secret, row.name),
        message="add it to an authenticator app, then confirm with a code "
        f"(`hybridai user mfa-enroll {row.name}` asks for it)",
    )


def confirm_mfa(session: Session, name: str, code: str, now: float) -> UserInfo:
    row = _user(session, name)
    if row.mfa_secret is None:
        raise ApiError(
            409, ErrorCode.CONFLICT, f"user {name!r} has no MFA enrollment to confirm: start one"
        )
    step = mfa.accepted_step(row.mfa_secret, code, now, row.mfa_last_step)
    if step is None:
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            "the TOTP code does not match: check the authenticator app's clock and try again",
        )
    row.mfa_enabled = True
    row.mfa_last_step = step
    session.commit()
    return _info(row)


def authenticate(session: Session, keys: TokenKeys, token: str, now: float) -> Person | None:
    """The person behind an access token or API token; None if neither kind.

    Raises ``ApiError`` 401 for an access token that is forged, expired, revoked, or whose
    user is gone or disabled (the user row is read on every request: disabling is immediate).
    """
    if not access_tokens.looks_like_access_token(token):
        found = fleet.authenticate_api_token(session, token)
        return None if found is None else Person(found[0], found[1], "full", "api-token")

    def revoked(jti: str) -> bool:
        return session.get(RevokedAccessTokenRow, jti) is not None

    try:
        claims = access_tokens.verify(keys.public_key, token, now, revoked)
    except access_tokens.InvalidAccessToken as exc:
        raise ApiError(401, ErrorCode.UNAUTHENTICATED, str(exc)) from None
    row = session.get(UserRow, claims.sub)
    if row is None or row.disabled:
        raise ApiError(
            401, ErrorCode.UNAUTHENTICATED, f"user {claims.sub!r} is disabled or was removed"
        )
    return Person(row.name, row.role, claims.scope, "access-token", claims.jti, claims.exp)


def logout(session: Session, person: Person) -> None:
    """Revoke the access token ``person`` called with, until it would have expired anyway."""
    if person.jti is None or person.expires_at is None:
        raise ApiError(
            400,
            ErrorCode.BAD_REQUEST,
            "only login access tokens can be logged out; revoke an API token with "
            "`hybridai token revoke ID`",
        )
    if session.get(RevokedAccessTokenRow, person.jti) is None:
        session.add(RevokedAccessTokenRow(jti=person.jti, expires_at=person.expires_at))
    session.commit()


# --- API tokens for automation ----------------------------------------------------------


def _token_info(row: ApiTokenRow) -> ApiTokenInfo:
    return ApiTokenInfo(
        token_id=row.token_hash[:TOKEN_ID_LENGTH],
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        revoked=row.revoked,
    )


def create_api_token(session: Session, name: str, role: str, now: float) -> ApiTokenCreated:
    _check_role(role)
    token = fleet.create_api_token(session, name, role, now)
    row = session.get(ApiTokenRow, hash_token(token))
    assert row is not None
    return ApiTokenCreated(token=token, **_token_info(row).model_dump())


def list_api_tokens(session: Session) -> list[ApiTokenInfo]:
    rows = session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.created_at))
    return [_token_info(row) for row in rows]


def revoke_api_token(session: Session, token_id: str) -> ApiTokenInfo:
    """Revoke the token whose id (the first 16 hex digits of its hash) is ``token_id``."""
    if not re.fullmatch(r"[0-9a-f]{16}", token_id):
        raise ApiError(
            400, ErrorCode.INVALID_INPUT, "a token id is 16 hex digits: see `hybridai token list`"
        )
    rows = session.scalars(
        select(ApiTokenRow).where(ApiTokenRow.token_hash.startswith(token_id))
    ).all()
    if not rows:
        raise ApiError(
            404, ErrorCode.NOT_FOUND, f"no API token {token_id}: see `hybridai token list`"
        )
    for row in rows:
        row.revoked = True
    session.commit()
    return _token_info(rows[0])
