"""Bearer secrets (enrollment tokens, device credentials, API tokens): minting and hashing.

Only hashes are stored, so a leaked database grants no access. The tokens carry 256 bits from
``secrets.token_urlsafe``, far beyond any brute-force search, so one fast, unsalted sha256 is
the right hash: slow salted password hashes (argon2) exist to protect low-entropy human
passwords and would only make every authenticated request slower. Unsalted also means a token
is found by an index lookup on its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ENROLLMENT_PREFIX = "hai_enr_"
DEVICE_PREFIX = "hai_dev_"
ADMIN_PREFIX = "hai_adm_"
API_PREFIX = "hai_api_"


def new_token(prefix: str) -> str:
    """Mint a 256-bit token; the readable prefix tells people and secret scanners its kind."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the sha256 hex digest that is stored in place of ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    """Compare in constant time, so response timing reveals nothing about the stored hash."""
    return hmac.compare_digest(hash_token(token), stored_hash)
