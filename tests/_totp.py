"""What an authenticator app shows: the TOTP code for a secret at a time (tests log in with it)."""

from __future__ import annotations

import pyotp

from hybridai.governance.mfa import STEP_S


def code_at(secret: str, now: float) -> str:
    return pyotp.TOTP(secret, interval=STEP_S).at(int(now))
