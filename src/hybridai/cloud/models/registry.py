"""Model registry: versions with edge/cloud ONNX artifacts, deployments, and desired state.

Artifacts are content-addressed by sha256 in the metadata and verified on every read, so a
corrupted or tampered blob is caught by the cloud before any device downloads it. Versions are
``max + 1`` per model, made safe under concurrency by the primary key and a retry; rows are
written before blobs, so a registration that loses the race never overwrites the winner's blob.
Service functions take session, blob store and time explicitly and commit their own work.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hybridai.cloud.models.onnx_inspect import inspect_onnx
from hybridai.link.signing import key_id, public_key_text, sign_artifact
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.registry import (
    MODEL_NAME_PATTERN,
    ArtifactInfo,
    Deployment,
    ModelSummary,
    ModelVersionInfo,
)
from hybridai.storage.blobs import BlobStore
from hybridai.storage.tables import (
    DeploymentRow,
    ModelArtifactRow,
    ModelRow,
    ModelVersionRow,
)

VARIANTS = ("edge", "cloud")
_REGISTER_ATTEMPTS = 5
_NAME = re.compile(MODEL_NAME_PATTERN)


def blob_key(name: str, version: int | str, variant: str) -> str:
    return f"models/{name}/{version}/{variant}.onnx"


def _invalid(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_INPUT, message)


def _json_object(value: dict[str, Any], label: str) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise _invalid(
            f"{label} must be plain JSON (str, int, float, bool, None, lists, dicts; "
            f"no NaN or infinity): {exc}"
        ) from None
    return loaded


def register_version(
    session: Session,
    blobs: BlobStore,
    name: str,
    artifacts: dict[str, bytes],
    metrics: dict[str, Any],
    lineage: dict[str, Any],
    registered_by: str,
    now: float,
    signing_key: Ed25519PrivateKey | None = None,
) -> ModelVersionInfo:
    """Validate and store a new version of ``name``; on any error nothing is stored.

    With ``signing_key`` each artifact is signed over its digest, name, version and variant
    (``hybridai.link.signing``); edges refuse unsigned artifacts.
    """
    if not _NAME.fullmatch(name):
        raise _invalid(
            f"model name {name!r} is not valid: use 1-63 lowercase letters, digits, '_' or "
            "'-', starting with a letter or digit"
        )
    unknown = sorted(set(artifacts) - set(VARIANTS))
    if not artifacts or unknown:
        raise _invalid(
            f"artifacts must be keyed by variant 'edge' and/or 'cloud' (got {sorted(artifacts)})"
        )
    metrics = _json_object(metrics, "metrics")
    lineage = _json_object(lineage, "lineage")
    described = {variant: inspect_onnx(data, variant) for variant, data in artifacts.items()}

    for _ in range(_REGISTER_ATTEMPTS):
        try:  # claim the model and the version number before any blob is written
            if session.get(ModelRow, name) is None:
                session.add(ModelRow(name=name, created_at=now))
                session.flush()
            current = session.scalar(
                select(func.max(ModelVersionRow.version)).where(ModelVersionRow.name == name)
            )
            version = (current or 0) + 1
            row = ModelVersionRow(
                name=name,
                version=version,
                stage="candidate",
                metrics=metrics,
                lineage=lineage,
                registered_by=registered_by,
                created_at=now,
            )
            session.add(row)
            session.flush()
        except IntegrityError:  # another registration won the race: retry with fresh state
            session.rollback()
            continue
        for variant, data in artifacts.items():
            inputs, outputs = described[variant]
            digest = hashlib.sha256(data).hexdigest()
            signature = (
                None
                if signing_key is None
                else sign_artifact(signing_key, name, str(version), variant, digest)
            )
            session.add(
                ModelArtifactRow(
                    name=name,
                    version=version,
                    variant=variant,
                    sha256=digest,
                    size=len(data),
                    blob_key=blob_key(name, version, variant),
                    inputs=inputs,
                    outputs=outputs,
                    signature=signature,
                    signing_key_id=None
                    if signing_key is None
                    else key_id(public_key_text(signing_key)),
                )
            )
        try:
            session.flush()
            for variant, data in artifacts.items():
                blobs.put(blob_key(name, version, variant), data)
            session.commit()
        except BaseException:
            session.rollback()
            raise
        return _version_info(session, row)
    raise ApiError(
        409,
        ErrorCode.CONFLICT,
        f"could not assign a version to model {name!r}: too many concurrent registrations; retry",
    )


def _version_info(session: Session, row: ModelVersionRow) -> ModelVersionInfo:
    artifacts = session.scalars(
        select(ModelArtifactRow)
        .where(ModelArtifactRow.name == row.name, ModelArtifactRow.version == row.version)
        .order_by(ModelArtifactRow.variant)
    )
    return ModelVersionInfo.model_validate(
        {
            "name": row.name,
            "version": str(row.version),
            "stage": row.stage,
            "artifacts": [
                ArtifactInfo.model_validate(
                    {
                        "variant": art.variant,
                        "sha256": art.sha256,
                        "size": art.size,
                        "inputs": art.inputs,
                        "outputs": art.outputs,
                        "signature": art.signature,
                    }
                )
                for art in artifacts
            ],
            "metrics": row.metrics,
            "lineage": row.lineage,
            "registered_by": row.registered_by,
            "created_at": row.created_at,
        }
    )


def _version_row(session: Session, name: str, version: str | int) -> ModelVersionRow:
    if not _NAME.fullmatch(name):  # never a path, never odd bytes: refused before any lookup
        raise _invalid(
            f"model name {name[:80]!r} is not valid: use 1-63 lowercase letters, digits, '_' or '-'"
        )
    if session.get(ModelRow, name) is None:
        raise ApiError(
            404,
            ErrorCode.MODEL_NOT_FOUND,
            f"model {name!r} is not registered: see `hybridai model list`",
        )
    number = int(version) if str(version).isdecimal() else None
    row = session.get(ModelVersionRow, (name, number)) if number is not None else None
    if row is None:
        known = session.scalars(
            select(ModelVersionRow.version)
            .where(ModelVersionRow.name == name)
            .order_by(ModelVersionRow.version)
        ).all()
        raise ApiError(
            404,
            ErrorCode.VERSION_NOT_FOUND,
            f"model {name!r} has no version {str(version)!r}; it has "
            f"{', '.join(map(str, known)) or 'none'}",
        )
    return row


def list_models(session: Session) -> list[ModelSummary]:
    versions: dict[str, dict[str, str]] = {
        name: {} for name in session.scalars(select(ModelRow.name).order_by(ModelRow.name))
    }
    for name, version, stage in session.execute(
        select(ModelVersionRow.name, ModelVersionRow.version, ModelVersionRow.stage).order_by(
            ModelVersionRow.version
        )
    ):
        versions[name][str(version)] = stage
    deployed = {row.name: str(row.version) for row in session.scalars(select(DeploymentRow))}
    return [
        ModelSummary(
            name=name, versions=list(found), deployed_version=deployed.get(name), stages=found
        )
        for name, found in versions.items()
    ]


def get_version(session: Session, name: str, version: str | int) -> ModelVersionInfo:
    return _version_info(session, _version_row(session, name, version))


def latest_version(session: Session, name: str) -> ModelVersionInfo | None:
    row = session.scalars(
        select(ModelVersionRow)
        .where(ModelVersionRow.name == name)
        .order_by(ModelVersionRow.version.desc())
        .limit(1)
    ).first()
    return None if row is None else _version_info(session, row)


def read_artifact(
    session: Session, blobs: BlobStore, name: str, version: str | int, variant: str
) -> bytes:
    """Return the artifact, verified against its registered sha256 before anyone gets it."""
    row = _version_row(session, name, version)
    artifact = session.get(ModelArtifactRow, (row.name, row.version, variant))
    if artifact is None:
        have = session.scalars(
            select(ModelArtifactRow.variant).where(
                ModelArtifactRow.name == row.name, ModelArtifactRow.version == row.version
            )
        ).all()
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"model {name!r} version {row.version} has no {variant!r} artifact; "
            f"it has {', '.join(sorted(have))}",
        )
    try:
        data = blobs.get(artifact.blob_key)
    except KeyError:
        raise ApiError(
            500,
            ErrorCode.INTERNAL,
            f"artifact {artifact.blob_key!r} is missing from the blob store: restore it from "
            "backup or register the model again",
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != artifact.sha256:
        raise ApiError(
            500,
            ErrorCode.DIGEST_MISMATCH,
            f"artifact {artifact.blob_key!r} is corrupted in the blob store (sha256 {digest}, "
            f"registered {artifact.sha256}): restore it from backup or register the model again",
        )
    return data


def _resolved_policy(row: ModelVersionRow, policy: PlacementPolicy | None) -> dict[str, Any] | None:
    """The policy as stored; a cascade without a threshold takes the version's calibrated one."""
    if policy is None:
        return None
    if policy.kind == "cascade" and (policy.cascade is None or policy.cascade.threshold is None):
        fitted = (row.metrics or {}).get("cascade")
        if not isinstance(fitted, dict) or "threshold" not in fitted:
            raise _invalid(
                f"model {row.name!r} v{row.version} has no calibrated cascade threshold: run "
                f"`hybridai model calibrate {row.name} --version {row.version} "
                "--target-cloud-share 0.2` first, or give the threshold explicitly"
            )
        cascade = policy.cascade.model_dump() if policy.cascade else {}
        cascade.update(threshold=float(fitted["threshold"]), measure=fitted["measure"])
        if fitted.get("band"):  # spread: the scale calibration ranked confidences on
            cascade.update(band=float(fitted["band"]))
        policy = PlacementPolicy.model_validate({**policy.model_dump(), "cascade": cascade})
    return policy.model_dump(mode="json")


def refuse_unbatchable(session: Session, name: str, version: str | int) -> None:
    """400 unless every tensor of the version has a dynamic first (batch) dimension.

    Batching concatenates requests along it. Checked when an operator deploys with
    ``batching``; a version promoted later under the same policy is not held up: edges and the
    cloud serve it unbatched and log why.
    """
    row = _version_row(session, name, version)
    for art in _version_info(session, row).artifacts:
        for role, tensors in (("input", art.inputs), ("output", art.outputs)):
            for tensor in tensors:
                shape = tensor.get("shape") or []
                if not shape or shape[0] != -1:
                    raise _invalid(
                        f"model {row.name!r} v{row.version} cannot be batched: {role} "
                        f"{tensor.get('name')!r} of its {art.variant} artifact has shape "
                        f"{shape}, with no dynamic first (batch) dimension; deploy it without "
                        "'batching', or export it with a dynamic batch dimension"
                    )


def set_deployment(
    session: Session,
    name: str,
    version: str | int,
    actor: str,
    now: float,
    policy: PlacementPolicy | None = None,
) -> Deployment:
    """Make ``version`` the one the fleet runs; the previous production version is archived.

    ``policy`` says how its requests are placed (None: the default, latency).
    """
    row = _version_row(session, name, version)
    stored_policy = _resolved_policy(row, policy)
    session.execute(
        update(ModelVersionRow)
        .where(
            ModelVersionRow.name == row.name,
            ModelVersionRow.stage == "production",
            ModelVersionRow.version != row.version,
        )
        .values(stage="archived")
    )
    row.stage = "production"
    deployment = session.get(DeploymentRow, row.name)
    if deployment is None:
        session.add(
            DeploymentRow(
                name=row.name,
                version=row.version,
                updated_at=now,
                updated_by=actor,
                policy=stored_policy,
            )
        )
    else:
        deployment.version = row.version
        deployment.updated_at = now
        deployment.updated_by = actor
        deployment.policy = stored_policy
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"model {name!r} was deployed concurrently; check `hybridai model list` and retry",
        ) from None
    return _deployment(row.name, row.version, stored_policy)


def _deployment(name: str, version: int, policy: dict[str, Any] | None) -> Deployment:
    return Deployment(
        name=name,
        version=str(version),
        policy=None if policy is None else PlacementPolicy.model_validate(policy),
    )


def get_deployments(session: Session) -> list[Deployment]:
    rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name))
    return [_deployment(row.name, row.version, row.policy) for row in rows]
