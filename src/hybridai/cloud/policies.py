"""Data policy service: declare a policy per dataset, list them, and apply lake retention.

Policies are stored whole per dataset (one JSON spec) and delivered to every edge in its
desired state; the edge applies them before a batch leaves the site. Lake retention deletes
rows older than the dataset's retention period and vacuums the files they lived in, so the
bytes are gone, not only hidden (time travel to versions before the deletion ends with it).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import DATASET_PATTERN, Lake
from hybridai.governance.policies import retention_s
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.policy import DataPolicy, PolicySpec, RetentionResult
from hybridai.storage.tables import DataPolicyRow


def _check_dataset(dataset: str) -> None:
    if not DATASET_PATTERN.fullmatch(dataset):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"dataset name {dataset!r} is invalid: use 1-63 lowercase letters, digits or "
            "underscores, starting with a letter",
        )


def _policy(row: DataPolicyRow) -> DataPolicy:
    return DataPolicy.model_validate(
        {
            **row.spec,
            "dataset": row.dataset,
            "updated_at": row.updated_at,
            "updated_by": row.updated_by,
        }
    )


def put_policy(
    session: Session, dataset: str, spec: PolicySpec, actor: str, now: float
) -> DataPolicy:
    """Declare (or replace) the policy of ``dataset``."""
    _check_dataset(dataset)
    row = session.get(DataPolicyRow, dataset)
    data = spec.model_dump(mode="json")
    if row is None:
        row = DataPolicyRow(dataset=dataset, spec=data, updated_at=now, updated_by=actor)
        session.add(row)
    else:
        row.spec, row.updated_at, row.updated_by = data, now, actor
    session.commit()
    return _policy(row)


def get_policy(session: Session, dataset: str) -> DataPolicy:
    _check_dataset(dataset)
    row = session.get(DataPolicyRow, dataset)
    if row is None:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"dataset {dataset!r} has no policy: declare one with `hybridai policy set {dataset}`",
        )
    return _policy(row)


def list_policies(session: Session) -> list[DataPolicy]:
    return [
        _policy(r) for r in session.scalars(select(DataPolicyRow).order_by(DataPolicyRow.dataset))
    ]


def apply_lake_retention(session: Session, lake: Lake, now: float) -> RetentionResult:
    """Delete, per policy, lake rows older than their dataset's lake retention period."""
    result = RetentionResult()
    datasets = set(lake.datasets())
    for policy in list_policies(session):
        if policy.dataset not in datasets:
            continue
        period = retention_s(policy, "lake", lake.columns(policy.dataset))
        if period is None:
            continue
        cutoff = now - period
        result.cutoffs[policy.dataset] = cutoff
        result.deleted[policy.dataset] = lake.apply_retention(policy.dataset, cutoff)
    return result
