"""The fleet registry as the pure targeting logic sees it (``hybridai.orchestrator.targeting``).

Device rows become ``DeviceFacts`` (site, kind, tags, recorded capabilities); a model's
placement policy and the artifact a device would load become ``ModelNeeds``. The rollout driver
selects its target here; ``desired_state`` asks the same ``unmet`` question of a policy.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.orchestrator.targeting import (
    MB,
    DeviceFacts,
    ModelNeeds,
    Selection,
    Selector,
    select_targets,
    unknown_devices,
)
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.registry import ModelVersionInfo
from hybridai.protocol.rollout import RolloutTarget
from hybridai.storage.tables import DeviceRow


def device_facts(row: DeviceRow) -> DeviceFacts:
    capabilities: dict[str, Any] = row.capabilities or {}
    return DeviceFacts(
        device_id=row.device_id,
        site=row.site,
        kind=row.kind,
        tags=dict(row.tags or {}),
        cores=int(capabilities.get("cores", 1)),
        memory_mb=float(capabilities.get("memory_mb", 0)),
        execution_providers=tuple(capabilities.get("execution_providers") or ()),
        accelerator=capabilities.get("accelerator"),
    )


def policy_needs(policy: dict[str, Any] | None, weights_bytes: int = 0) -> ModelNeeds:
    """What a device needs to run a model placed by ``policy`` from an artifact of that size."""
    needs = PlacementPolicy.model_validate(policy or {}).needs
    return ModelNeeds(
        weights_mb=weights_bytes / MB,
        min_memory_mb=needs.min_memory_mb,
        accelerator=needs.accelerator,
        execution_provider=needs.execution_provider,
        min_cores=needs.min_cores,
    )


def served_size(info: ModelVersionInfo) -> int:
    """Bytes of the artifact devices get of this version: the edge variant, else the cloud one."""
    by_variant = {a.variant: a for a in info.artifacts}
    served = by_variant.get("edge") or by_variant.get("cloud")
    return 0 if served is None else served.size


def selector(target: RolloutTarget) -> Selector:
    return Selector(
        sites=frozenset(target.sites),
        kinds=frozenset(target.kinds),
        tags=dict(target.tags),
        devices=frozenset(target.devices),
    )


def select_devices(session: Session, target: RolloutTarget, needs: ModelNeeds) -> Selection:
    """The enrolled, unrevoked devices ``target`` picks, less those that cannot run the model.

    404 when the target names a device that is not enrolled (or revoked).
    """
    rows = session.scalars(select(DeviceRow).where(DeviceRow.revoked.is_(False))).all()
    facts = [device_facts(row) for row in rows]
    chosen = selector(target)
    unknown = unknown_devices(chosen, facts)
    if unknown:
        raise ApiError(
            404,
            ErrorCode.UNKNOWN_DEVICE,
            f"no enrolled, unrevoked device {', '.join(unknown)}: see `hybridai fleet list`",
        )
    return select_targets(chosen, facts, needs)
