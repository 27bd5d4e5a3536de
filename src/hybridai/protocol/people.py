"""People on the wire: login, users, MFA enrollment, API tokens and the audit log."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

USER_NAME_PATTERN = r"^[a-z0-9][a-z0-9._@-]{0,62}$"
Role = Literal["admin", "operator", "data-scientist", "viewer"]


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)
    code: str | None = Field(default=None, max_length=16, description="TOTP code, if enrolled.")


class LoginResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: float
    username: str
    role: str
    scope: Literal["full", "mfa-enroll"]
    message: str = ""


class Whoami(BaseModel):
    name: str
    kind: str
    role: str
    scope: str


class NewUser(BaseModel):
    name: str = Field(pattern=USER_NAME_PATTERN)
    role: Role
    password: str = Field(min_length=1, max_length=1024)


class UserInfo(BaseModel):
    name: str
    role: str
    mfa_enabled: bool
    disabled: bool
    created_at: float
    created_by: str


class MfaEnrollment(BaseModel):
    """Shown once: the secret and the ``otpauth://`` URI for an authenticator app."""

    name: str
    secret: str
    otpauth_uri: str
    message: str


class MfaCode(BaseModel):
    code: str = Field(min_length=1, max_length=16)


class ApiTokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@ -]*$")
    role: Role


class ApiTokenInfo(BaseModel):
    token_id: str
    name: str
    role: str
    created_at: float
    revoked: bool


class ApiTokenCreated(ApiTokenInfo):
    token: str = Field(description="Shown once; the cloud keeps only its hash.")


class BootstrapRevoked(BaseModel):
    """The answer to revoking the bootstrap admin token (DATA_DIR/admin.token)."""

    revoked: int = Field(description="Bootstrap tokens that were still valid; 0: already done.")


class AuditEntry(BaseModel):
    seq: int
    ts: float
    actor: str
    role: str
    action: str
    target: str
    client: str
    result: str
    status: int
    detail: str
    prev_hash: str
    hash: str


AuditProblemKind = Literal["edited", "deleted", "reordered"]


class AuditProblem(BaseModel):
    seq: int
    kind: AuditProblemKind
    message: str


class AuditVerification(BaseModel):
    ok: bool
    entries: int
    head_seq: int
    problems: list[AuditProblem]
