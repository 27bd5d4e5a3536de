"""The metadata store's tables, as typed ORM classes.

Timestamps are float epoch seconds, passed in by the service layer (which has no clock of its
own), so the same value round-trips through SQLite and PostgreSQL unchanged. Secrets are never
stored, only their sha256 (see ``hybridai.cloud.people.secrets``). Model versions are integers
here so "the next version" is ``max + 1``; the wire shows them as strings.

The initial Alembic migration (``migrations/versions/0001_initial.py``) creates exactly these
tables; a test compares the two so they cannot drift.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Double,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LENGTH = 63  # DEVICE_ID_PATTERN / MODEL_NAME_PATTERN allow at most 63 characters
HASH_LENGTH = 64  # sha256 hex

# Named constraints keep migrations portable: both backends get the same, predictable names.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every metadata table; ``Base.metadata`` is the schema."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class DeviceRow(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    site: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    capabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    enrolled_at: Mapped[float] = mapped_column(Double)
    last_seen: Mapped[float | None] = mapped_column(Double)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Operator labels that select devices for rollouts (migration 0010), e.g. {"line": "3"}.
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")


class DeviceCertificateRow(Base):
    """Every certificate the platform CA issued to a device (migration 0002).

    A device request is accepted only when its certificate's serial is here, for that device,
    unexpired and unrevoked: revocation needs no CRL, it is one row update.
    """

    __tablename__ = "device_certificates"

    serial: Mapped[str] = mapped_column(String(40), primary_key=True)  # hex, <= 160 bits
    device_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("devices.device_id"), index=True
    )
    not_before: Mapped[float] = mapped_column(Double)
    not_after: Mapped[float] = mapped_column(Double)
    issued_at: Mapped[float] = mapped_column(Double)
    revoked_at: Mapped[float | None] = mapped_column(Double)
    # sha256 of the certificate's SubjectPublicKeyInfo (migration 0013): a certificate with
    # this serial but another key is refused. None: issued before 0013, bound on first use.
    public_key_sha256: Mapped[str | None] = mapped_column(String(HASH_LENGTH))


class SiteKeyRow(Base):
    """An API key for a site's LAN clients (sensors, apps), migration 0013.

    Only the sha256 of the key is kept; the site's edges receive that hash in their desired
    state and check keys offline. ``roles`` is a subset of ingest, infer, read.
    """

    __tablename__ = "site_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    site: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    name: Mapped[str] = mapped_column(String(200))
    roles: Mapped[list[str]] = mapped_column(JSON)
    key_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), unique=True)
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[float | None] = mapped_column(Double)


class EnrollmentTokenRow(Base):
    __tablename__ = "enrollment_tokens"

    token_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    site: Mapped[str] = mapped_column(String(ID_LENGTH))
    device_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    expires_at: Mapped[float] = mapped_column(Double)
    used_at: Mapped[float | None] = mapped_column(Double)
    tags: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")


class ApiTokenRow(Base):
    __tablename__ = "api_tokens"

    token_hash: Mapped[str] = mapped_column(String(HASH_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Double)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class ModelRow(Base):
    __tablename__ = "models"

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[float] = mapped_column(Double)


class ModelVersionRow(Base):
    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("models.name"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stage: Mapped[str] = mapped_column(String(16), default="candidate")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    registered_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Double)


class ModelArtifactRow(Base):
    __tablename__ = "model_artifacts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["name", "version"], ["model_versions.name", "model_versions.version"]
        ),
    )

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    variant: Mapped[str] = mapped_column(String(16), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(HASH_LENGTH))
    size: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(512))
    inputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    outputs: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # Ed25519 over digest + name/version/variant (hybridai.link.signing); NULL: unsigned.
    signature: Mapped[str | None] = mapped_column(String(128))
    signing_key_id: Mapped[str | None] = mapped_column(String(16))


class DeploymentRow(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        ForeignKeyConstraint(
            ["name", "version"], ["model_versions.name", "model_versions.version"]
        ),
    )

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Double)
    updated_by: Mapped[str] = mapped_column(String(200))
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # protocol.placement


class TrainingRunRow(Base):
    __tablename__ = "training_runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_name: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[float] = mapped_column(Double)
    finished_at: Mapped[float | None] = mapped_column(Double)


class UserRow(Base):
    """A person: argon2id password hash, optional TOTP second factor (migration 0003)."""

    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    mfa_secret: Mapped[str | None] = mapped_column(String(64))
    mfa_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    mfa_last_step: Mapped[int | None] = mapped_column(BigInteger)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(200))


class RevokedAccessTokenRow(Base):
    """Access tokens revoked before they expire (logout); rows may go once expired."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[float] = mapped_column(Double, index=True)


class AuditEntryRow(Base):
    """One hash-chained audit entry (see ``hybridai.governance.audit``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ts: Mapped[float] = mapped_column(Double, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(200), index=True)
    target: Mapped[str] = mapped_column(Text)
    client: Mapped[str] = mapped_column(String(200))
    result: Mapped[str] = mapped_column(String(16))
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


class AuditHeadRow(Base):
    """The chain head (one row): appends lock it, so concurrent writers cannot fork the chain."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(HASH_LENGTH))


class DataPolicyRow(Base):
    """A stream's data policy (``hybridai.protocol.policy.PolicySpec``), one row per stream."""

    __tablename__ = "data_policies"

    stream: Mapped[str] = mapped_column("dataset", String(ID_LENGTH), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Double)
    updated_by: Mapped[str] = mapped_column(String(200))


class LakeGrantRow(Base):
    """A read grant on one lake stream to a role or a user (migration 0015).

    ``grantee`` is ``role:NAME`` or ``user:NAME``; admins read every stream without one.
    """

    __tablename__ = "lake_grants"

    stream: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    grantee: Mapped[str] = mapped_column(String(200), primary_key=True)
    granted_at: Mapped[float] = mapped_column(Double)
    granted_by: Mapped[str] = mapped_column(String(200))


class StreamSchemaRow(Base):
    """A stream's declared record schema (``protocol.streams.DeclaredSpec``), migration 0011.

    One row per stream for the whole fleet (``site`` empty) and one per site that declares its
    own; ``cloud.stream_schemas`` picks the one each device gets in its desired state.
    """

    __tablename__ = "stream_schemas"

    stream: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    site: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)  # "": the fleet
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Double)
    updated_by: Mapped[str] = mapped_column(String(200))


class RolloutRow(Base):
    """A gradual rollout of one model version (migration 0009); plan and state as JSON.

    The state is the pure state machine's (``hybridai.orchestrator.rollout``), stored whole so
    any cloud replica can take the next tick.
    """

    __tablename__ = "rollouts"

    rollout_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    from_version: Mapped[int] = mapped_column(Integer)
    to_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)
    created_by: Mapped[str] = mapped_column(String(200))


class DeviceModelPinRow(Base):
    """A per-device version of a model that overrides the fleet's deployment (migration 0009).

    Set by the rollout driver for the devices of the current waves; ``desired_state.desired_state``
    reads it, so that stays the one place that computes what a device should run.
    """

    __tablename__ = "device_model_pins"
    __table_args__ = (
        ForeignKeyConstraint(
            ["name", "version"], ["model_versions.name", "model_versions.version"]
        ),
    )

    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    rollout_id: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[float] = mapped_column(Double)


class RetrainingPolicyRow(Base):
    """When a model is retrained on drift or hard examples, and what happened last (0008)."""

    __tablename__ = "retraining_policies"

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)  # protocol.registry.RetrainingPolicy
    updated_at: Mapped[float] = mapped_column(Double)
    updated_by: Mapped[str] = mapped_column(String(200))
    last_triggered_at: Mapped[float | None] = mapped_column(Double)
    last_reason: Mapped[str | None] = mapped_column(Text)
    last_run_id: Mapped[str | None] = mapped_column(String(64))


class FleetSettingsRow(Base):
    """Edge settings an operator set for one level (``protocol.edge_settings.EdgeConfig``), 0012.

    ``level`` is fleet, site, tag or device; ``name`` is "" for the fleet, else the site, the
    ``key=value`` tag or the device id. ``cloud.devices.device_settings`` merges a device's.
    """

    __tablename__ = "fleet_settings"

    level: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(2 * ID_LENGTH + 1), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Double)
    updated_by: Mapped[str] = mapped_column(String(200))


class QuarantinedBatchRow(Base):
    """A sync batch the lake could not take, kept apart (``cloud.data.quarantine``), 0014.

    The body lies in the blob store under ``blob_key``; ``batch_seq`` is None for rows a
    declared schema moved out of a lake table they no longer fit.
    """

    __tablename__ = "quarantined_batches"
    __table_args__ = (UniqueConstraint("device_id", "batch_seq"),)  # exactly once per batch

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(ID_LENGTH), index=True)
    batch_seq: Mapped[int | None] = mapped_column(BigInteger)
    stream: Mapped[str] = mapped_column(String(ID_LENGTH))
    records: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    blob_key: Mapped[str] = mapped_column(String(300))
    quarantined_at: Mapped[float] = mapped_column(Double)


class TelemetryPointRow(Base):
    """One point of a device's telemetry series (``cloud.operations.telemetry``), 0016.

    ``step`` 0 is a raw point from a status report (count 1); 60 and 3600 are the 1-minute and
    1-hour buckets compaction folds them into (``ts``: the bucket's start).
    """

    __tablename__ = "telemetry_points"
    __table_args__ = (
        Index("ix_telemetry_points_series", "device_id", "metric", "step", "ts"),
        Index("ix_telemetry_points_step_ts", "step", "ts"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    metric: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(ID_LENGTH), default="")  # "" for the device
    step: Mapped[int] = mapped_column(Integer)
    ts: Mapped[float] = mapped_column(Double)
    count: Mapped[int] = mapped_column(Integer)
    total: Mapped[float] = mapped_column(Double)
    low: Mapped[float] = mapped_column(Double)
    high: Mapped[float] = mapped_column(Double)


class TelemetryCompactionRow(Base):
    """How far raw points were folded into buckets of ``step`` seconds (0016)."""

    __tablename__ = "telemetry_compaction"

    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    done_until: Mapped[float] = mapped_column(Double)


class AlertRow(Base):
    """An alert (``protocol.alerts.Alert``) and its acknowledgement (0016).

    ``subject_key`` is the subject in one string: alerts of one kind and subject merge.
    """

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_kind_subject", "kind", "subject_key"),)

    alert_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject_key: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16), index=True)
    alert: Mapped[dict[str, Any]] = mapped_column(JSON)  # the Alert as the API shows it
    started_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class HealingActionRow(Base):
    """A self-healing action (``protocol.alerts.HealingAction``) and its orders (0017).

    ``orders`` is what the action changed for the device (placement, a reload, a settings
    overlay, a renewal, an aborted rollout); while ``active``, desired state carries them.
    """

    __tablename__ = "healing_actions"
    __table_args__ = (
        Index("ix_healing_actions_alert", "alert_id"),
        Index("ix_healing_actions_device_active", "device_id", "active"),
        Index("ix_healing_actions_rule_subject", "rule", "subject_key"),
    )

    action_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule: Mapped[str] = mapped_column(String(63))
    alert_id: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    subject_key: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean)
    orders: Mapped[dict[str, Any]] = mapped_column(JSON)
    action: Mapped[dict[str, Any]] = mapped_column(JSON)  # the HealingAction as the API shows it
    taken_at: Mapped[float] = mapped_column(Double)
    updated_at: Mapped[float] = mapped_column(Double)


class RemoteTierRow(Base):
    """A model served by a remote v2 server instead of the cloud's runtime (0018).

    ``config`` is ``protocol.remote.RemoteTier``: its secret is a reference, never the value.
    """

    __tablename__ = "remote_tiers"

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[float] = mapped_column(Double)
    updated_by: Mapped[str] = mapped_column(String(200))


class LeaseRow(Base):
    """Who runs a cluster-wide job (a ticker) until when (0019): one replica at a time.

    A holder renews before ``expires_at``; when it dies, another replica takes the lease over
    once it has expired (``storage.leases``).
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[float] = mapped_column(Double)


class LoginFailureRow(Base):
    """Failed logins per key (``user:NAME`` or ``addr:IP``), shared by every replica (0019)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_last_failure", "last_failure"),)

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    locked_until: Mapped[float] = mapped_column(Double)
    last_failure: Mapped[float] = mapped_column(Double)
