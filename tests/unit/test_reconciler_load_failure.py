"""A signed, intact artifact the runtime cannot load: the edge keeps serving the old version.

Complements the signature tests: digest and signature are valid here, only the load fails.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from _models import train_classifier_onnx
from _rollouts import unloadable
from hybridai.edge.models.reconciler import Reconciler
from hybridai.link.signing import public_key_text, sign_artifact
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.serving.repository import ModelRepository

KEY = Ed25519PrivateKey.generate()
V1 = train_classifier_onnx(seed=0)
BROKEN = unloadable(train_classifier_onnx(seed=1))


class Blobs:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.downloads = 0

    async def artifact(self, path: str) -> bytes:
        self.downloads += 1
        return self.data[path]


def _assignment(version: str, data: bytes) -> ModelAssignment:
    digest = hashlib.sha256(data).hexdigest()
    return ModelAssignment(
        name="pm",
        version=version,
        variant="edge",
        sha256=digest,
        size=len(data),
        artifact_path=f"/a/{version}",
        signature=sign_artifact(KEY, "pm", version, "edge", digest),
    )


def _desired(a: ModelAssignment) -> DesiredState:
    return DesiredState(
        device_id="e", generation=a.version, models=[a], signing_public_key=public_key_text(KEY)
    )


def test_an_unloadable_version_is_reported_and_the_old_one_serves_on(tmp_path: Path) -> None:
    blobs = Blobs()
    blobs.data.update({"/a/1": V1, "/a/2": BROKEN})
    reconciler = Reconciler(ModelRepository(), blobs, tmp_path / "models")
    asyncio.run(reconciler.apply(_desired(_assignment("1", V1))))

    asyncio.run(reconciler.apply(_desired(_assignment("2", BROKEN))))

    assert reconciler.repository.current_version("pm") == "1"
    [status] = reconciler.loaded()
    assert (status.version, status.state, status.failed_version) == ("1", "ready", "2")
    assert status.error is not None and "v2 refused" in status.error
    # rolled back: the desired state names v1 again, and the stale error goes
    asyncio.run(reconciler.apply(_desired(_assignment("1", V1))))
    [status] = reconciler.loaded()
    assert (status.version, status.error, status.failed_version) == ("1", None, None)


def test_a_damaged_local_cache_is_fetched_again_not_loaded(tmp_path: Path) -> None:
    blobs = Blobs()
    blobs.data["/a/1"] = V1
    a = _assignment("1", V1)
    cache = tmp_path / "models"
    asyncio.run(Reconciler(ModelRepository(), blobs, cache).apply(_desired(a)))
    [cached] = cache.glob("pm-1-*.onnx")
    cached.write_bytes(b"\x00" * 64)  # the disk rotted

    fresh = Reconciler(ModelRepository(), blobs, cache)
    asyncio.run(fresh.apply(_desired(a)))

    assert fresh.repository.current_version("pm") == "1"
    assert blobs.downloads == 2 and cached.read_bytes() == V1
