"""Model artifact signatures (Ed25519): the registry signs, the edge verifies before loading.

A signature covers the artifact's sha256 digest *together with* its model name, version and
variant, so a valid signature cannot be moved to another artifact (or to another version of the
same model). The cloud's private key lives in its data dir, readable by its owner only (0600);
edges need only the public key, which they pin on first use (``TrustedKey``) or take from a file
an operator provisions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

_CONTEXT = b"hybridai-model-artifact-v1"


class SignatureInvalid(Exception):
    """A signature is missing, malformed, from another key or for other content."""


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The signing key at ``path``; created (PEM, mode 0600, exclusively) when absent."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first: use theirs
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return loaded


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as base64 of its 32 raw bytes: what desired states carry."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_id(public_text: str) -> str:
    """A short, stable name for a public key (16 hex digits of its sha256)."""
    return hashlib.sha256(public_text.encode()).hexdigest()[:16]


def artifact_message(name: str, version: str, variant: str, sha256: str) -> bytes:
    """The exact bytes signed for one artifact: identity and digest, unambiguously framed."""
    parts = (_CONTEXT, name.encode(), str(version).encode(), variant.encode(), sha256.encode())
    return b"\0".join(parts)


def sign_artifact(
    key: Ed25519PrivateKey, name: str, version: str, variant: str, sha256: str
) -> str:
    """A base64 Ed25519 signature over ``artifact_message``."""
    signature = key.sign(artifact_message(name, version, variant, sha256))
    return base64.b64encode(signature).decode()


def verify_artifact(
    public_text: str, signature: str | None, name: str, version: str, variant: str, sha256: str
) -> None:
    """Return quietly when ``signature`` is valid for this artifact; raise SignatureInvalid."""
    if not signature:
        raise SignatureInvalid("the artifact is unsigned")
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_text, validate=True))
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid(f"malformed key or signature: {exc}") from None
    try:
        public.verify(raw, artifact_message(name, version, variant, sha256))
    except InvalidSignature:
        raise SignatureInvalid(
            f"the signature does not match {name} v{version} ({variant}, sha256 {sha256[:12]}…) "
            f"under the trusted key {key_id(public_text)}"
        ) from None


class TrustedKey:
    """The public key an edge trusts for model signatures.

    Either fixed by an operator (``fixed``, e.g. from ``--signing-key-file``) or pinned on first
    use: the first key the cloud offers is written to ``pin_path`` and every later offer must
    equal it. A changed key is refused, never silently adopted; to rotate it, replace the pin
    file (or the provisioned key) deliberately.
    """

    def __init__(self, pin_path: Path, fixed: str | None = None) -> None:
        self.pin_path = pin_path
        self.fixed = fixed.strip() if fixed else None
        if self.fixed is not None:
            _check_public(self.fixed, "the provisioned signing key")

    def current(self) -> str | None:
        if self.fixed is not None:
            return self.fixed
        if self.pin_path.exists():
            return self.pin_path.read_text().strip() or None
        return None

    def accept(self, offered: str | None) -> str | None:
        """The key to verify with after the cloud offered ``offered``; pins it if none yet."""
        current = self.current()
        if current is not None or not offered:
            return current
        _check_public(offered, "the cloud's signing key")
        self.pin_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.pin_path.with_suffix(".tmp")
        tmp.write_text(offered + "\n")
        os.replace(tmp, self.pin_path)
        return offered


def _check_public(text: str, what: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{what} is not a base64 Ed25519 public key: {exc}") from None


def read_public_key_file(path: Path) -> str:
    """A public key file: base64 raw (as ``hybridai`` prints it) or a PEM public key."""
    data = path.read_bytes()
    if data.lstrip().startswith(b"-----BEGIN"):
        loaded = serialization.load_pem_public_key(data)
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError(f"{path} does not hold an Ed25519 public key")
        return public_key_text(loaded)
    text = data.decode().strip()
    _check_public(text, f"{path}")
    return text
