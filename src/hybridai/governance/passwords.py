"""Password hashing with argon2id: slow and memory-hard, so a leaked store resists guessing.

The parameters live in the hash string itself, so raising them later costs nothing up front:
``needs_rehash`` tells the login path to store a fresh hash the next time the password is known.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 hashes anything; a cap keeps a login request cheap to refuse

# argon2-cffi's defaults follow RFC 9106's second recommendation (argon2id, 64 MiB, t=3, p=4).
_HASHER = PasswordHasher()


class WeakPassword(ValueError):
    """The password does not meet the minimum the platform accepts."""


def check_strength(password: str) -> None:
    """Refuse passwords that are too short or too long (length is what resists guessing)."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password may have at most {MAX_LENGTH} characters")


def hash_password(password: str, hasher: PasswordHasher = _HASHER) -> str:
    """An argon2id hash (PHC string with salt and parameters) of ``password``."""
    return hasher.hash(password)


def verify_password(stored: str, password: str, hasher: PasswordHasher = _HASHER) -> bool:
    """Whether ``password`` matches ``stored``; a malformed hash never matches."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str, hasher: PasswordHasher = _HASHER) -> bool:
    """Whether ``stored`` was made with other parameters than ``hasher``'s current ones."""
    try:
        return hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True
