"""TOTP second factor (RFC 6238, via pyotp): secrets, provisioning URIs, replay-safe checks.

A code is accepted within one 30-second step either side of the server's clock, and a code
is good once: the caller stores the accepted time step and passes it back as ``last_step``, so
a code seen on the wire (or typed twice) cannot be replayed within its window.
"""

from __future__ import annotations

import hmac

import pyotp

ISSUER = "hybridai"
STEP_S = 30
WINDOW = 1  # steps accepted either side of now: tolerates small clock drift


def new_secret() -> str:
    """A fresh base32 secret (160 bits, as RFC 4226 recommends)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://`` URI authenticator apps read (usually from a QR code)."""
    return pyotp.TOTP(secret, interval=STEP_S).provisioning_uri(name=account, issuer_name=issuer)


def accepted_step(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to, or None when it is wrong, stale or already used.

    Steps at or before ``last_step`` are refused: each code (and every older one) works once.
    """
    code = code.strip()
    if not (code.isdecimal() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_S)
    current = int(now) // STEP_S
    for step in range(current - WINDOW, current + WINDOW + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * STEP_S), code):
            return step
    return None
