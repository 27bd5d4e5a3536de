"""A remote tier: the Open Inference Protocol v2 server the cloud forwards one model to.

Credentials never travel or rest in clear: ``secret`` is a reference the cloud resolves when it
calls (``env:NAME``, an environment variable of the cloud process, or ``file:/path``, a file on
the cloud's machine such as a mounted Kubernetes secret), so the metadata store, the audit log
and every API answer hold only where the secret is, never what it is.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from hybridai.protocol.names import NAME_PATTERN

AuthKind = Literal["none", "bearer", "header"]
SECRET_PATTERN = r"^(env:[A-Za-z_][A-Za-z0-9_]{0,127}|file:/[^\x00-\x1f]{1,1023})$"
HEADER_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
_SECRET = re.compile(SECRET_PATTERN)


class RemoteTier(BaseModel):
    """How the cloud reaches the v2 server that serves one model in its place."""

    url: str = Field(
        max_length=2048, description="Base URL of the v2 server, e.g. https://kserve.example:8443"
    )
    remote_model: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="The model's name on the remote server (default: the same name).",
    )
    remote_version: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="A version to pin on the remote server (default: the request's, or none).",
    )
    auth: AuthKind = "none"
    auth_header: str | None = Field(
        default=None,
        pattern=HEADER_PATTERN,
        description="auth=header: the header that carries the secret (e.g. X-Api-Key).",
    )
    secret: str | None = Field(
        default=None,
        max_length=1028,
        description="Where the credential is: env:NAME or file:/path, never the value itself.",
    )
    ca_file: str | None = Field(
        default=None, max_length=1024, description="CA bundle (PEM) to verify the server with."
    )
    client_cert: str | None = Field(
        default=None, max_length=1024, description="Client certificate (PEM) for mutual TLS."
    )
    client_key: str | None = Field(
        default=None, max_length=1024, description="The client certificate's key (PEM)."
    )
    verify: bool = Field(default=True, description="Verify the server's certificate.")
    timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Budget of one request, retries included."
    )
    retries: int = Field(
        default=2, ge=0, le=5, description="Retries on connection errors and 503 only."
    )
    breaker_failures: int = Field(
        default=3, ge=1, le=100, description="Consecutive failures that open the breaker."
    )
    breaker_cooldown_s: float = Field(
        default=5.0, gt=0, le=600, description="How long an open breaker fails fast."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the url must be http:// or https:// with a host")
        if parts.username or parts.password:
            raise ValueError("the url must not carry credentials: use auth and a secret reference")
        if parts.query or parts.fragment:
            raise ValueError("the url must not carry a query or fragment")
        return value.rstrip("/")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET.fullmatch(value):
            # The message never echoes the value: it may be the secret itself, pasted.
            raise ValueError(
                "the secret must be a reference, env:NAME (an environment variable of the "
                "cloud) or file:/absolute/path (a file on the cloud's machine), not the value"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RemoteTier:
        if self.auth != "none" and self.secret is None:
            raise ValueError(f"auth={self.auth} needs a secret (env:NAME or file:/path)")
        if self.auth == "none" and self.secret is not None:
            raise ValueError("a secret was given with auth=none: say auth=bearer or auth=header")
        if (self.auth == "header") != (self.auth_header is not None):
            raise ValueError("auth=header needs auth_header, and auth_header needs auth=header")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("give client_cert and client_key together")
        if urlsplit(self.url).scheme == "http" and (
            self.ca_file or self.client_cert or not self.verify
        ):
            raise ValueError("TLS options (ca_file, client_cert, verify) need an https:// url")
        return self


class RemoteTierState(BaseModel):
    """What this cloud process knows of the remote now (health checks and its breaker)."""

    breaker: str  # orchestrator.breaker.BreakerState: closed, open or half_open
    healthy: bool | None = None  # None: not checked yet
    last_check_at: float | None = None
    last_error: str | None = None


class RemoteTierInfo(BaseModel):
    """A model's remote tier as the API shows it: the configuration, who set it, its state."""

    name: str
    config: RemoteTier
    updated_at: float
    updated_by: str
    state: RemoteTierState | None = None  # None: this process has not loaded it yet
