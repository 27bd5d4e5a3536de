"""Offline model bundles: one version's artifacts, signatures, key and a desired-state fragment.

A device that cannot reach the cloud at first boot starts from a bundle (``hybridai edge run
--bundle``): its reconciler verifies digests and signatures against the bundle's key exactly as
it would a download, and pins that key, so when the device joins the fleet later the cloud's
artifacts verify under the same key.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from hybridai.cloud.devices.desired_state import artifact_path
from hybridai.cloud.models import registry
from hybridai.link.signing import public_key_text
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.policy import DataPolicy
from hybridai.storage.blobs import BlobStore
from hybridai.storage.tables import DeploymentRow

FORMAT = "hybridai-bundle/1"
MANIFEST = "manifest.json"
KEY_FILE = "signing-key.pub"


def _add(archive: tarfile.TarFile, name: str, data: bytes, now: float) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(now), 0o644
    archive.addfile(info, io.BytesIO(data))


def build(
    session: Session,
    blobs: BlobStore,
    name: str,
    version: str,
    signing_key: Ed25519PrivateKey | None,
    policies: list[DataPolicy],
) -> bytes:
    """The bundle as tar bytes; every artifact is read verified against its registered digest."""
    if signing_key is None:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            "this cloud signs no artifacts, and edges accept only signed ones: configure "
            "HYBRIDAI_CLOUD_SIGNING_KEY_FILE and register the model again",
        )
    info = registry.get_version(session, name, version)
    deployment = session.get(DeploymentRow, info.name)
    policy = deployment.policy if deployment and str(deployment.version) == info.version else None
    by_variant = {a.variant: a for a in info.artifacts}
    served = by_variant.get("edge") or by_variant.get("cloud")
    if served is None or served.signature is None:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"{name} v{info.version} has no signed artifact to bundle: register it again on a "
            "cloud that signs",
        )
    assignment = ModelAssignment.model_validate(
        {
            "name": info.name,
            "version": info.version,
            "variant": served.variant,
            "sha256": served.sha256,
            "size": served.size,
            "artifact_path": artifact_path(info.name, info.version, served.variant),
            "signature": served.signature,
            "policy": policy,
            "reference": info.lineage.get("reference"),
        }
    )
    key = public_key_text(signing_key)
    models = [assignment.model_dump(mode="json")]
    generation = hashlib.sha256(json.dumps(models, sort_keys=True).encode()).hexdigest()[:12]
    desired = DesiredState(
        device_id="*",
        generation=f"bundle-{generation}",
        models=[assignment],
        signing_public_key=key,
        policies=sorted(policies, key=lambda p: p.stream),
    )
    now = time.time()
    manifest = {
        "format": FORMAT,
        "name": info.name,
        "version": info.version,
        "created_at": now,
        "artifacts": {
            a.variant: {"file": f"artifacts/{a.variant}.onnx", "sha256": a.sha256}
            for a in info.artifacts
        },
        "desired": desired.model_dump(mode="json"),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        _add(archive, MANIFEST, json.dumps(manifest, indent=2).encode(), now)
        _add(archive, KEY_FILE, (key + "\n").encode(), now)
        for a in info.artifacts:
            data = registry.read_artifact(session, blobs, info.name, info.version, a.variant)
            _add(archive, f"artifacts/{a.variant}.onnx", data, now)
    return buffer.getvalue()
