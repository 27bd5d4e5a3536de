"""Model signatures: keys, what a signature binds, and trust on first use at the edge."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hybridai.link.signing import (
    SignatureInvalid,
    TrustedKey,
    load_or_create_key,
    public_key_text,
    read_public_key_file,
    sign_artifact,
    verify_artifact,
)

DIGEST = hashlib.sha256(b"model").hexdigest()


def test_key_is_created_owner_only_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "cloud" / "signing.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_text(load_or_create_key(path)) == public_key_text(key)


def test_a_signature_verifies_only_for_its_own_artifact() -> None:
    key = Ed25519PrivateKey.generate()
    public = public_key_text(key)
    signature = sign_artifact(key, "pm", "2", "edge", DIGEST)
    verify_artifact(public, signature, "pm", "2", "edge", DIGEST)
    other = hashlib.sha256(b"other").hexdigest()
    for moved in (
        ("pm", "3", "edge", DIGEST),  # another version
        ("pm", "2", "cloud", DIGEST),  # another variant
        ("other", "2", "edge", DIGEST),  # another model
        ("pm", "2", "edge", other),  # other bytes
    ):
        with pytest.raises(SignatureInvalid):
            verify_artifact(public, signature, *moved)


@pytest.mark.parametrize("signature", [None, "", "not base64!", "AAAA"])
def test_missing_or_malformed_signatures_are_refused(signature: str | None) -> None:
    public = public_key_text(Ed25519PrivateKey.generate())
    with pytest.raises(SignatureInvalid):
        verify_artifact(public, signature, "pm", "1", "edge", DIGEST)


def test_a_signature_under_another_key_is_refused() -> None:
    signature = sign_artifact(Ed25519PrivateKey.generate(), "pm", "1", "edge", DIGEST)
    public = public_key_text(Ed25519PrivateKey.generate())
    with pytest.raises(SignatureInvalid, match="trusted key"):
        verify_artifact(public, signature, "pm", "1", "edge", DIGEST)


def test_trust_on_first_use_pins_the_first_key(tmp_path: Path) -> None:
    first = public_key_text(Ed25519PrivateKey.generate())
    second = public_key_text(Ed25519PrivateKey.generate())
    trust = TrustedKey(tmp_path / "pin.pub")
    assert trust.accept(None) is None
    assert trust.accept(first) == first
    assert TrustedKey(tmp_path / "pin.pub").accept(second) == first  # survives a restart


def test_a_provisioned_key_wins_and_garbage_is_refused(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "cloud.pub"
    path.write_text(public_key_text(key) + "\n")
    provisioned = read_public_key_file(path)
    trust = TrustedKey(tmp_path / "pin.pub", provisioned)
    assert trust.accept(public_key_text(Ed25519PrivateKey.generate())) == provisioned
    assert not (tmp_path / "pin.pub").exists()
    with pytest.raises(ValueError):
        TrustedKey(tmp_path / "pin.pub").accept("not a key")
