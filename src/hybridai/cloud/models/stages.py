"""Registry stages (candidate, staged, production, archived) and comparing two versions.

``production`` is the fleet's deployment, so promoting to it goes through
``registry.set_deployment`` (which archives the previous production version) and keeps the
model's placement policy. A version still running somewhere cannot be archived: the deployed
one, or one a rollout pinned on some device.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.models import registry
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.stages import MetricDelta, StageChange, VersionComparison
from hybridai.storage.tables import DeploymentRow, DeviceModelPinRow, ModelVersionRow


def change_stage(
    session: Session, name: str, version: str, change: StageChange, actor: str, now: float
) -> str:
    """Move ``name`` v``version`` to ``change.stage``; return the stage it now has."""
    info = registry.get_version(session, name, version)
    row = session.get(ModelVersionRow, (name, int(info.version)))
    assert row is not None
    deployment = session.get(DeploymentRow, name)
    if change.stage == "production":
        policy = (
            None
            if deployment is None or deployment.policy is None
            else PlacementPolicy.model_validate(deployment.policy)
        )
        registry.set_deployment(session, name, info.version, actor, now, policy=policy)
        return "production"
    if deployment is not None and deployment.version == row.version:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"{name} v{row.version} is what the fleet runs: promote or roll out another "
            "version to production first",
        )
    if change.stage == "archived":
        pinned = session.scalars(
            select(DeviceModelPinRow.device_id).where(
                DeviceModelPinRow.name == name, DeviceModelPinRow.version == row.version
            )
        ).all()
        if pinned:
            raise ApiError(
                409,
                ErrorCode.CONFLICT,
                f"{name} v{row.version} still runs on {', '.join(sorted(pinned))} (a rollout "
                "pinned it): roll out another version there first",
            )
    row.stage = change.stage
    session.commit()
    return row.stage


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(inner, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _side_by_side(a: dict[str, Any], b: dict[str, Any], only_changed: bool) -> list[MetricDelta]:
    fa, fb = _flatten(a), _flatten(b)
    rows = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key), fb.get(key)
        if only_changed and va == vb:
            continue
        delta = float(vb) - float(va) if _number(va) and _number(vb) else None  # type: ignore[arg-type]
        rows.append(MetricDelta(key=key, a=va, b=vb, delta=delta))
    return rows


def compare(session: Session, name: str, a: str, b: str) -> VersionComparison:
    """Metrics side by side (with b - a), artifact sizes, and the lineage keys that differ."""
    first, second = registry.get_version(session, name, a), registry.get_version(session, name, b)
    sizes_a = {art.variant: art.size for art in first.artifacts}
    sizes_b = {art.variant: art.size for art in second.artifacts}
    variants = sorted(set(sizes_a) | set(sizes_b))
    return VersionComparison(
        name=name,
        a=first.version,
        b=second.version,
        stages={first.version: first.stage, second.version: second.stage},
        metrics=_side_by_side(first.metrics, second.metrics, only_changed=False),
        sizes={v: {"a": sizes_a.get(v), "b": sizes_b.get(v)} for v in variants},
        lineage=_side_by_side(first.lineage, second.lineage, only_changed=True),
    )
