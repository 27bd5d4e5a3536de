"""Data policy service: declare a policy per stream, list them, and apply lake retention.

Policies are stored whole per stream (one JSON spec) and delivered to every edge in its
desired state; the edge applies them before a batch leaves the site. Lake retention deletes
rows older than the stream's retention period and vacuums the files they lived in, so the
bytes are gone, not only hidden (time travel to versions before the deletion ends with it).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import STREAM_RE, Lake
from hybridai.governance.policies import retention_s
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.policy import DataPolicy, PolicySpec, RetentionResult
from hybridai.storage.tables import DataPolicyRow


def _check_stream(stream: str) -> None:
    if not STREAM_RE.fullmatch(stream):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"stream name {stream!r} is invalid: use 1-63 lowercase letters, digits or "
            "underscores, starting with a letter",
        )


def _policy(row: DataPolicyRow) -> DataPolicy:
    return DataPolicy.model_validate(
        {
            **row.spec,
            "stream": row.stream,
            "updated_at": row.updated_at,
            "updated_by": row.updated_by,
        }
    )


def put_policy(
    session: Session, stream: str, spec: PolicySpec, actor: str, now: float
) -> DataPolicy:
    """Declare (or replace) the policy of ``stream``."""
    _check_stream(stream)
    row = session.get(DataPolicyRow, stream)
    data = spec.model_dump(mode="json")
    if row is None:
        row = DataPolicyRow(stream=stream, spec=data, updated_at=now, updated_by=actor)
        session.add(row)
    else:
        row.spec, row.updated_at, row.updated_by = data, now, actor
    session.commit()
    return _policy(row)


def get_policy(session: Session, stream: str) -> DataPolicy:
    _check_stream(stream)
    row = session.get(DataPolicyRow, stream)
    if row is None:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"stream {stream!r} has no policy: declare one with `hybridai policy set {stream}`",
        )
    return _policy(row)


def list_policies(session: Session) -> list[DataPolicy]:
    return [
        _policy(r) for r in session.scalars(select(DataPolicyRow).order_by(DataPolicyRow.stream))
    ]


def apply_lake_retention(session: Session, lake: Lake, now: float) -> RetentionResult:
    """Delete, per policy, lake rows older than their stream's lake retention period."""
    result = RetentionResult()
    streams = set(lake.streams())
    for policy in list_policies(session):
        if policy.stream not in streams:
            continue
        period = retention_s(policy, "lake", lake.columns(policy.stream))
        if period is None:
            continue
        cutoff = now - period
        result.cutoffs[policy.stream] = cutoff
        result.deleted[policy.stream] = lake.apply_retention(policy.stream, cutoff)
    return result
