"""Signed access tokens: forged, tampered, expired, wrong-audience and revoked ones fail."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import jwt
import pytest

from hybridai.governance import access_tokens as at

NOW = 1_733_000_000.0


@pytest.fixture
def keys(tmp_path: Path) -> at.TokenKeys:
    return at.load_or_create_keys(tmp_path / "token.key")


def test_round_trip_carries_the_claims(keys: at.TokenKeys) -> None:
    token, issued = at.issue(keys, "alice", "operator", NOW, ttl_s=600)
    claims = at.verify(keys.public_key, token, NOW + 1)
    assert claims == issued
    assert (claims.sub, claims.role, claims.scope, claims.exp) == (
        "alice",
        "operator",
        "full",
        NOW + 600,
    )
    assert at.looks_like_access_token(token) and not at.looks_like_access_token("hai_api_x")


def test_key_file_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    first = at.load_or_create_keys(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert at.load_or_create_keys(path).public_pem == first.public_pem
    assert at.load_public_key(first.public_pem) is not None


def test_forged_token_from_another_key_is_refused(keys: at.TokenKeys, tmp_path: Path) -> None:
    other = at.load_or_create_keys(tmp_path / "other.key")
    token, _ = at.issue(other, "mallory", "admin", NOW)
    with pytest.raises(at.InvalidAccessToken, match="signature"):
        at.verify(keys.public_key, token, NOW)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_payload_is_refused(keys: at.TokenKeys) -> None:
    token, _ = at.issue(keys, "vera", "viewer", NOW)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    with pytest.raises(at.InvalidAccessToken):
        at.verify(keys.public_key, f"{header}.{_b64(claims)}.{signature}", NOW)


def test_unsigned_and_hmac_confused_tokens_are_refused(keys: at.TokenKeys) -> None:
    claims = {
        "sub": "mallory", "role": "admin", "scope": "full", "iat": int(NOW), "exp": int(NOW) + 60,
        "jti": "x", "iss": at.ISSUER, "aud": at.AUDIENCE,
    }  # fmt: skip
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(at.InvalidAccessToken):
        at.verify(keys.public_key, unsigned, NOW)
    hmac_forged = jwt.encode(claims, "k" * 32, algorithm="HS256")
    with pytest.raises(at.InvalidAccessToken):
        at.verify(keys.public_key, hmac_forged, NOW)


def test_expired_token_is_refused(keys: at.TokenKeys) -> None:
    token, _ = at.issue(keys, "alice", "admin", NOW, ttl_s=60)
    at.verify(keys.public_key, token, NOW + 59)
    with pytest.raises(at.InvalidAccessToken, match="expired"):
        at.verify(keys.public_key, token, NOW + 60)


def test_token_from_the_future_is_refused(keys: at.TokenKeys) -> None:
    token, _ = at.issue(keys, "alice", "admin", NOW + 3600)
    with pytest.raises(at.InvalidAccessToken, match="future"):
        at.verify(keys.public_key, token, NOW)


def test_wrong_audience_is_refused(keys: at.TokenKeys) -> None:
    claims = {
        "sub": "alice", "role": "admin", "scope": "full", "iat": int(NOW), "exp": int(NOW) + 60,
        "jti": "x", "iss": at.ISSUER, "aud": "some-other-service",
    }  # fmt: skip
    token = jwt.encode(claims, keys.private_key, algorithm="EdDSA")
    with pytest.raises(at.InvalidAccessToken, match="another service"):
        at.verify(keys.public_key, token, NOW)


def test_missing_claims_are_refused(keys: at.TokenKeys) -> None:
    token = jwt.encode({"sub": "alice", "aud": at.AUDIENCE}, keys.private_key, algorithm="EdDSA")
    with pytest.raises(at.InvalidAccessToken):
        at.verify(keys.public_key, token, NOW)


def test_revoked_token_is_refused(keys: at.TokenKeys) -> None:
    token, claims = at.issue(keys, "alice", "admin", NOW)
    with pytest.raises(at.InvalidAccessToken, match="revoked"):
        at.verify(keys.public_key, token, NOW, lambda jti: jti == claims.jti)
    assert at.verify(keys.public_key, token, NOW, lambda jti: False) == claims


@pytest.mark.parametrize("garbage", ["", "a.b.c", "x" * 5000, "' OR '1'='1.x.y"])
def test_garbage_is_refused(keys: at.TokenKeys, garbage: str) -> None:
    with pytest.raises(at.InvalidAccessToken):
        at.verify(keys.public_key, garbage, NOW)
