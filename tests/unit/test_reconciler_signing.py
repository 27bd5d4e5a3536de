"""The edge refuses tampered, unsigned and re-used signatures, and keeps serving what it has.

Real ONNX models, a real ModelRepository and real signatures; the artifact source is an
in-memory stand-in for the cloud's download route.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _models import train_classifier_onnx
from hybridai.edge.models.reconciler import Reconciler
from hybridai.link.signing import TrustedKey, public_key_text, sign_artifact
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.serving.repository import ModelRepository


class Blobs:
    """What the cloud would serve, path by path."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def artifact(self, path: str) -> bytes:
        return self.data[path]


KEY = Ed25519PrivateKey.generate()
V1 = train_classifier_onnx(seed=0)
V2 = train_classifier_onnx(seed=1)


def assignment(
    version: str, data: bytes, key: Ed25519PrivateKey | None = KEY, sha256: str | None = None
) -> ModelAssignment:
    digest = sha256 or hashlib.sha256(data).hexdigest()
    return ModelAssignment(
        name="pm",
        version=version,
        variant="edge",
        sha256=digest,
        size=len(data),
        artifact_path=f"/a/pm/{version}",
        signature=None if key is None else sign_artifact(key, "pm", version, "edge", digest),
    )


def desired(*models: ModelAssignment, key: str | None = None) -> DesiredState:
    return DesiredState(
        device_id="edge-a",
        generation=str(len(models)) + (models[-1].version if models else ""),
        models=list(models),
        signing_public_key=key or public_key_text(KEY),
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Reconciler, Blobs]:
    blobs = Blobs()
    reconciler = Reconciler(ModelRepository(), blobs, tmp_path / "models")
    blobs.data["/a/pm/1"] = V1
    asyncio.run(reconciler.apply(desired(assignment("1", V1))))
    assert reconciler.repository.current_version("pm") == "1"
    return reconciler, blobs


def refused(reconciler: Reconciler, a: ModelAssignment, key: str | None = None) -> str:
    asyncio.run(reconciler.apply(desired(a, key=key)))
    assert reconciler.repository.current_version("pm") == "1"  # the old version serves on
    [status] = reconciler.loaded()
    assert status.version == "1" and status.state == "ready"
    assert status.error is not None and "v2 refused" in status.error
    return status.error


def test_a_signed_new_version_is_loaded(setup: tuple[Reconciler, Blobs]) -> None:
    reconciler, blobs = setup
    blobs.data["/a/pm/2"] = V2
    asyncio.run(reconciler.apply(desired(assignment("2", V2))))
    assert reconciler.repository.current_version("pm") == "2"
    assert reconciler.loaded()[0].error is None


def test_bytes_changed_after_registration_are_refused(setup: tuple[Reconciler, Blobs]) -> None:
    reconciler, blobs = setup
    blobs.data["/a/pm/2"] = V1  # the blob was swapped; the promised digest is V2's
    assert "sha256" in refused(reconciler, assignment("2", V2))


def test_bytes_and_digest_both_rewritten_fail_the_signature(
    setup: tuple[Reconciler, Blobs],
) -> None:
    reconciler, blobs = setup
    blobs.data["/a/pm/2"] = V1  # attacker rewrote blob and metadata, but holds no key
    genuine = assignment("2", V2)
    forged = genuine.model_copy(update={"sha256": hashlib.sha256(V1).hexdigest()})
    assert "signature" in refused(reconciler, forged)


def test_an_unsigned_artifact_is_refused(setup: tuple[Reconciler, Blobs]) -> None:
    reconciler, blobs = setup
    blobs.data["/a/pm/2"] = V2
    assert "unsigned" in refused(reconciler, assignment("2", V2, key=None))


def test_a_signature_of_another_artifact_is_refused(setup: tuple[Reconciler, Blobs]) -> None:
    reconciler, blobs = setup
    blobs.data["/a/pm/2"] = V1
    v1_signature = assignment("1", V1).signature
    moved = assignment("2", V1).model_copy(update={"signature": v1_signature})
    assert "signature" in refused(reconciler, moved)


def test_a_new_signing_key_is_not_adopted_silently(setup: tuple[Reconciler, Blobs]) -> None:
    reconciler, blobs = setup
    blobs.data["/a/pm/2"] = V2
    rogue = Ed25519PrivateKey.generate()
    error = refused(reconciler, assignment("2", V2, key=rogue), key=public_key_text(rogue))
    assert "trusts" in error


def test_a_restart_verifies_cached_artifacts_again(
    setup: tuple[Reconciler, Blobs], tmp_path: Path
) -> None:
    cached = desired(assignment("1", V1))  # what the agent's desired-state cache kept
    restarted = Reconciler(ModelRepository(), Blobs(), tmp_path / "models")
    asyncio.run(restarted.restore(cached))
    assert restarted.repository.current_version("pm") == "1"
    # with another provisioned key, the same cache is refused
    other = TrustedKey(tmp_path / "x.pub", public_key_text(Ed25519PrivateKey.generate()))
    distrusting = Reconciler(ModelRepository(), Blobs(), tmp_path / "models", trust=other)
    asyncio.run(distrusting.restore(cached))
    assert distrusting.repository.current_version("pm") is None
