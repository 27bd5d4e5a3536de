"""What one device should run: the desired state the edge pulls, computed in one place.

Deployments, per-device rollout pins, capability needs, signing key, data policies and
stream schemas meet here; ``generation`` is a digest of the content, so it is an ETag that
changes exactly when what the device should run changes, whichever cloud replica computes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.models.targets import device_facts, policy_needs
from hybridai.orchestrator.targeting import unmet
from hybridai.protocol.edge_settings import DeviceSettings
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.policy import DataPolicy
from hybridai.protocol.site_access import SiteAccess
from hybridai.protocol.streams import SchemaSpec
from hybridai.storage.tables import (
    DeploymentRow,
    DeviceModelPinRow,
    DeviceRow,
    ModelArtifactRow,
    ModelVersionRow,
)


def artifact_path(name: str, version: int | str, variant: str) -> str:
    """Where devices download an artifact, relative to the cloud's base URL."""
    return f"/api/v1/models/{name}/versions/{version}/artifacts/{variant}"


def _can_run(device: DeviceRow | None, policy: dict[str, Any] | None) -> bool:
    """Whether the device's recorded capabilities meet the model's declared needs."""
    if device is None or not policy:
        return True
    return unmet(policy_needs(policy), device_facts(device)) is None


def reference_of(session: Session, name: str, version: int) -> dict[str, Any] | None:
    """The training-data histograms a version ships to edges for drift (None: none recorded)."""
    row = session.get(ModelVersionRow, (name, version))
    reference = (row.lineage or {}).get("reference") if row is not None else None
    return reference if isinstance(reference, dict) else None


def deferral_of(session: Session, name: str, version: int) -> dict[str, Any] | None:
    """How the version's cascade decides, with its signed router (None: the threshold)."""
    row = session.get(ModelVersionRow, (name, version))
    stored = (row.metrics or {}).get("deferral") if row is not None else None
    spec = stored.get("spec") if isinstance(stored, dict) else None
    return spec if isinstance(spec, dict) else None


def desired_state(
    session: Session,
    device_id: str,
    settings: DeviceSettings | Mapping[str, Any] | None = None,
    signing_public_key: str | None = None,
    policies: list[DataPolicy] | None = None,
    stream_schemas: dict[str, SchemaSpec] | None = None,
    site_access: SiteAccess | None = None,
) -> DesiredState:
    """Compute what ``device_id`` should run: deployed models, signing key and data policies.

    Every deployed model is assigned, edge variant preferred, with its placement policy (at
    the version a rollout pinned for this device, if any, else the deployment's), except
    to a device whose capabilities do not meet the policy's needs (its router hands such
    requests to a site peer or the cloud); the data policies are what the edge applies before
    a batch leaves the site; the stream schemas (those of the device's site) what it enforces
    on ingest.

    ``generation`` is a digest of the content, so it serves as an ETag that changes exactly
    when the models or settings change, whichever replica computes it.
    """
    if not isinstance(settings, DeviceSettings):
        settings = DeviceSettings.model_validate(dict(settings or {}))
    models: list[ModelAssignment] = []
    device = session.get(DeviceRow, device_id)
    pins = {  # per-device versions a rollout set; they override the fleet's deployment
        pin.name: pin.version
        for pin in session.scalars(
            select(DeviceModelPinRow).where(DeviceModelPinRow.device_id == device_id)
        )
    }
    for deployment in session.scalars(select(DeploymentRow).order_by(DeploymentRow.name)):
        if not _can_run(device, deployment.policy):
            continue
        artifacts = {
            art.variant: art
            for art in session.scalars(
                select(ModelArtifactRow).where(
                    ModelArtifactRow.name == deployment.name,
                    ModelArtifactRow.version == pins.get(deployment.name, deployment.version),
                )
            )
        }
        artifact = artifacts.get("edge") or artifacts.get("cloud")
        if artifact is None:
            continue
        models.append(
            ModelAssignment.model_validate(
                {
                    "name": artifact.name,
                    "version": str(artifact.version),
                    "variant": artifact.variant,
                    "sha256": artifact.sha256,
                    "size": artifact.size,
                    "artifact_path": artifact_path(
                        artifact.name, artifact.version, artifact.variant
                    ),
                    "signature": artifact.signature,
                    "policy": deployment.policy,
                    "reference": reference_of(session, artifact.name, artifact.version),
                    "deferral": deferral_of(session, artifact.name, artifact.version)
                    if artifact.variant == "edge"
                    else None,
                }
            )
        )
    policies = sorted(policies or [], key=lambda p: p.stream)
    content: dict[str, Any] = {
        "models": [m.model_dump(mode="json") for m in models],
        "settings": settings.model_dump(mode="json"),  # unset (None) fields left out
        "signing_public_key": signing_public_key,
        "policies": [p.model_dump(mode="json") for p in policies],
    }
    schemas = dict(sorted((stream_schemas or {}).items()))
    if schemas:  # absent when none: generations computed before schemas existed stay valid
        content["stream_schemas"] = {s: v.model_dump(mode="json") for s, v in schemas.items()}
    if site_access is not None:  # who may call the device: a new key or device wakes it
        content["site_access"] = site_access.model_dump(mode="json")
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    generation = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    return DesiredState(
        device_id=device_id,
        generation=generation,
        models=models,
        settings=settings,
        signing_public_key=signing_public_key,
        policies=policies,
        stream_schemas=schemas,
        site_access=site_access,
    )
