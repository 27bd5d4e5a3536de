"""Short-lived signed access tokens (JWT, EdDSA over Ed25519) for people who logged in.

The cloud signs with a private key kept in its data folder (mode 0600); anyone holding the
public key (the edge, for its admin routes) verifies a token offline. Claims: ``sub`` (user),
``role``, ``scope`` (``full``, or ``mfa-enroll`` for a privileged user who must enroll MFA
first), ``iat``, ``exp``, ``jti`` (the id logout revokes), ``iss`` and ``aud``. Verification
takes the clock as an argument and refuses forged, expired, wrong-audience and revoked tokens.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ISSUER = "hybridai-cloud"
AUDIENCE = "hybridai"
ALGORITHM = "EdDSA"
DEFAULT_TTL_S = 15 * 60
FULL = "full"
MFA_ENROLL = "mfa-enroll"
_CLOCK_SKEW_S = 30.0
_REQUIRED = ["sub", "role", "scope", "iat", "exp", "jti", "iss", "aud"]


class InvalidAccessToken(Exception):
    """The token is forged, malformed, expired, for another audience, or revoked."""


@dataclass(frozen=True)
class Claims:
    sub: str
    role: str
    scope: str
    iat: float
    exp: float
    jti: str


@dataclass(frozen=True)
class TokenKeys:
    """The signing key pair; ``public_pem`` is what verifiers are given."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_pem(self) -> str:
        return (
            self.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
            .strip()
        )


def load_or_create_keys(path: Path) -> TokenKeys:
    """The key pair stored at ``path``, created (mode 0600, atomically) if there is none.

    Several processes may start at once: the key is written to a private temporary file and
    linked into place, so exactly one key wins and nobody reads a half-written file.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return TokenKeys(key)


def issue(
    keys: TokenKeys,
    subject: str,
    role: str,
    now: float,
    ttl_s: float = DEFAULT_TTL_S,
    scope: str = FULL,
) -> tuple[str, Claims]:
    """Sign a token for ``subject`` valid from ``now`` for ``ttl_s`` seconds."""
    claims = Claims(subject, role, scope, float(now), float(now + ttl_s), uuid.uuid4().hex)
    payload: dict[str, Any] = {
        "sub": claims.sub,
        "role": claims.role,
        "scope": claims.scope,
        "iat": int(claims.iat),
        "exp": int(claims.exp),
        "jti": claims.jti,
        "iss": ISSUER,
        "aud": AUDIENCE,
    }
    token = jwt.encode(payload, keys.private_key, algorithm=ALGORITHM)
    return token, Claims(
        claims.sub, claims.role, claims.scope, payload["iat"], payload["exp"], claims.jti
    )


def load_public_key(pem: str) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the token public key is not an Ed25519 key")
    return key


def looks_like_access_token(token: str) -> bool:
    """JWTs have three dot-separated parts; hybridai's opaque tokens have none."""
    return token.count(".") == 2


def verify(
    public_key: Ed25519PublicKey,
    token: str,
    now: float,
    is_revoked: Callable[[str], bool] | None = None,
) -> Claims:
    """The token's claims, if its signature, audience, issuer and lifetime check out at ``now``."""
    try:
        payload = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],  # never "none", never an HMAC confused with the public key
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "require": _REQUIRED},
        )
    except jwt.InvalidAudienceError:
        raise InvalidAccessToken("the access token is meant for another service") from None
    except jwt.InvalidSignatureError:
        raise InvalidAccessToken("the access token's signature is not valid") from None
    except jwt.PyJWTError as exc:
        raise InvalidAccessToken(f"the access token is not valid ({exc})") from None
    try:
        claims = Claims(
            str(payload["sub"]),
            str(payload["role"]),
            str(payload["scope"]),
            float(payload["iat"]),
            float(payload["exp"]),
            str(payload["jti"]),
        )
    except (TypeError, ValueError):
        raise InvalidAccessToken("the access token's claims are malformed") from None
    if claims.exp <= now:
        raise InvalidAccessToken("the access token has expired: log in again")
    if claims.iat > now + _CLOCK_SKEW_S:
        raise InvalidAccessToken("the access token was issued in the future: check the clocks")
    if is_revoked is not None and is_revoked(claims.jti):
        raise InvalidAccessToken("the access token was revoked (logged out): log in again")
    return claims
