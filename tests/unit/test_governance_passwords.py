"""argon2id password hashing: verify, refuse, rehash when the parameters change."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from hybridai.governance import passwords

FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def test_hash_is_argon2id_salted_and_verifies() -> None:
    first = passwords.hash_password("correct horse battery", FAST)
    second = passwords.hash_password("correct horse battery", FAST)
    assert first.startswith("$argon2id$") and first != second  # a fresh salt each time
    assert passwords.verify_password(first, "correct horse battery", FAST)
    assert not passwords.verify_password(first, "correct horse batterY", FAST)


@pytest.mark.parametrize("stored", ["", "plain", "$argon2id$v=19$m=8,t=1,p=1$bad$bad"])
def test_malformed_hash_never_matches(stored: str) -> None:
    assert not passwords.verify_password(stored, "anything at all", FAST)


def test_rehash_when_parameters_change() -> None:
    old = passwords.hash_password("correct horse battery", FAST)
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    assert not passwords.needs_rehash(old, FAST)
    assert passwords.needs_rehash(old, stronger)
    assert passwords.verify_password(old, "correct horse battery", stronger)  # still logs in


def test_strength_and_length_limits() -> None:
    with pytest.raises(passwords.WeakPassword, match="at least 12"):
        passwords.check_strength("short")
    with pytest.raises(passwords.WeakPassword, match="at most"):
        passwords.check_strength("x" * (passwords.MAX_LENGTH + 1))
    passwords.check_strength("a perfectly long passphrase")
    assert not passwords.verify_password(passwords.hash_password("x", FAST), "x" * 5000, FAST)
