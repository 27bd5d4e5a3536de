"""TOTP: codes work within a small window, once; wrong, stale and replayed codes are refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from _totp import code_at
from hybridai.governance import mfa

NOW = 1_733_000_010.0


def test_secret_and_provisioning_uri() -> None:
    secret = mfa.new_secret()
    assert len(secret) == 32 and secret != mfa.new_secret()
    uri = urlsplit(mfa.provisioning_uri(secret, "alice"))
    assert (uri.scheme, uri.netloc) == ("otpauth", "totp")
    query = parse_qs(uri.query)
    assert query["secret"] == [secret] and query["issuer"] == ["hybridai"]


def test_code_accepted_within_one_step_of_drift() -> None:
    secret = mfa.new_secret()
    step = int(NOW) // mfa.STEP_S
    for drift in (-mfa.STEP_S, 0, mfa.STEP_S):
        assert mfa.accepted_step(secret, code_at(secret, NOW + drift), NOW, None) == (
            step + drift // mfa.STEP_S
        )


def test_code_outside_the_window_is_refused() -> None:
    secret = mfa.new_secret()
    assert mfa.accepted_step(secret, code_at(secret, NOW - 3 * mfa.STEP_S), NOW, None) is None
    assert mfa.accepted_step(secret, code_at(secret, NOW + 3 * mfa.STEP_S), NOW, None) is None


def test_a_code_works_once_and_older_codes_stop_working() -> None:
    secret = mfa.new_secret()
    code = code_at(secret, NOW)
    step = mfa.accepted_step(secret, code, NOW, None)
    assert step is not None
    assert mfa.accepted_step(secret, code, NOW + 5, step) is None  # replay within its window
    previous = code_at(secret, NOW - mfa.STEP_S)
    assert mfa.accepted_step(secret, previous, NOW, step) is None  # older than the used one
    later = code_at(secret, NOW + mfa.STEP_S)
    assert mfa.accepted_step(secret, later, NOW + mfa.STEP_S, step) == step + 1


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "' OR 1=1 --"])
def test_malformed_codes_are_refused(code: str) -> None:
    assert mfa.accepted_step(mfa.new_secret(), code, NOW, None) is None


def test_another_secrets_code_is_refused() -> None:
    assert mfa.accepted_step(mfa.new_secret(), code_at(mfa.new_secret(), NOW), NOW, None) in (
        None,
        int(NOW) // mfa.STEP_S - 1,
        int(NOW) // mfa.STEP_S,
        int(NOW) // mfa.STEP_S + 1,
    )  # a 1-in-a-million collision is allowed; the assertion documents it
