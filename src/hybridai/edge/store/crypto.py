"""Encryption at rest for the edge store's payloads (AES-256-GCM), off by default.

One master key (32 bytes, from a file or an environment variable) is stretched with HKDF into
two independent keys: one encrypts each payload with AES-GCM under a random 96-bit nonce, with
the record's stream and timestamp as associated data (a ciphertext moved to another stream or
time fails to open); the other keys the content hash used for de-duplication, HMAC-SHA256
instead of plain sha256, so equal records still de-duplicate while the hash column reveals
nothing (a plain hash of a low-entropy record could be confirmed by hashing guesses).

A check value derived from the key is kept in the store, so starting with the wrong key fails
at once with a clear error instead of at the first read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import sqlite3
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
_NONCE_BYTES = 12
_INFO = b"hybridai-edge-store-v1"
_KEY_CHECK = "store_key_check"


class StoreKeyError(RuntimeError):
    """The store key is missing, malformed or not the one the store was encrypted with."""


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO + purpose).derive(key)


def generate_key_text() -> str:
    """A fresh key as 64 hex digits: what the key file or variable holds."""
    return secrets.token_hex(KEY_BYTES)


def parse_key(text: str, source: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64; StoreKeyError says what is wrong."""
    text = text.strip()
    try:
        key = (
            bytes.fromhex(text)
            if len(text) == 2 * KEY_BYTES
            else base64.b64decode(text, validate=True)
        )
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != KEY_BYTES:
        raise StoreKeyError(
            f"the edge store key from {source} must be {KEY_BYTES} bytes as 64 hex digits or "
            "base64; create one with `hybridai edge store-key`"
        )
    return key


def load_store_key(key_file: Path | None, key_text: str | None) -> bytes | None:
    """The store key from a file (preferred) or text; None when encryption is off."""
    if key_file is not None:
        try:
            return parse_key(key_file.read_text(), str(key_file))
        except OSError as exc:
            raise StoreKeyError(f"cannot read the edge store key file {key_file}: {exc}") from None
    if key_text:
        return parse_key(key_text, "HYBRIDAI_EDGE_STORE_KEY")
    return None


def write_key_file(path: Path) -> None:
    """Create a new key file, readable by its owner only; never overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(generate_key_text() + "\n")


class PayloadCipher:
    """Seals and opens payloads; keys the de-duplication hash."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise StoreKeyError(f"the edge store key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(_derive(key, b"/payload"))
        self._mac = _derive(key, b"/dedup")
        self.check_value = hmac.new(_derive(key, b"/check"), b"check", hashlib.sha256).hexdigest()

    @property
    def dedup_key(self) -> bytes:
        """Keys the store's 64-bit row hashes (``columns.row_hashes``)."""
        return self._mac[:32]

    def seal_bytes(self, aad: bytes, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data, aad)

    def open_bytes(self, aad: bytes, sealed: bytes, stream: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise StoreKeyError(
                f"a chunk of stream {stream!r} fails authentication: it was altered on disk"
            ) from None

    @staticmethod
    def _aad(stream: str, ts: float) -> bytes:
        return f"{stream}\0{ts!r}".encode()

    def seal(self, stream: str, ts: float, payload: str) -> bytes:
        """A schema-2 record payload (one per row): ``open`` reads them when a store upgrades."""
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, payload.encode(), self._aad(stream, ts))

    def open(self, stream: str, ts: float, sealed: bytes | str) -> str:
        if isinstance(sealed, str):
            raise StoreKeyError("found an unencrypted payload in an encrypted store")
        nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, self._aad(stream, ts)).decode()
        except InvalidTag:
            raise StoreKeyError(
                f"a payload of stream {stream!r} fails authentication: it was altered on disk"
            ) from None


def check_store_key(conn: sqlite3.Connection, cipher: PayloadCipher | None, path: Path) -> None:
    """Refuse to open a store with a missing or wrong key, or to mix plain and sealed payloads.

    The first keyed open of an empty store records the key's check value in its ``meta``.
    """
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (_KEY_CHECK,)).fetchone()
    if cipher is None:
        if row is not None:
            raise StoreKeyError(
                f"{path} is encrypted: give its key with HYBRIDAI_EDGE_STORE_KEY_FILE "
                "or HYBRIDAI_EDGE_STORE_KEY"
            )
        return
    if row is None:
        if conn.execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is not None:
            raise StoreKeyError(
                f"{path} holds unencrypted records: let it drain and start with a new "
                "data dir to turn encryption on"
            )
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)", (_KEY_CHECK, cipher.check_value)
        )
    elif row[0] != cipher.check_value:
        raise StoreKeyError(
            f"{path} was encrypted with another key: give the key it was created with "
            "(HYBRIDAI_EDGE_STORE_KEY_FILE or HYBRIDAI_EDGE_STORE_KEY)"
        )
