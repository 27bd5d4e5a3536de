"""Cloud settings: each declared once, typed, with a default, help and an environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from hybridai import config_file
from hybridai.cloud.data.lake_storage import S3Options
from hybridai.protocol.runtime import DEFAULT_PROVIDER_ORDER, ExecutionProvider


class CloudSettings(config_file.FileSettings):
    """Flags, then ``HYBRIDAI_CLOUD_*`` variables, ``.env``, config.toml's ``[cloud]``, defaults."""

    model_config = SettingsConfigDict(
        env_prefix="HYBRIDAI_CLOUD_", env_file=".env", extra="ignore", populate_by_name=True
    )
    config_table: ClassVar[str] = "cloud"

    data_dir: Path = Field(
        default=Path(".hybridai/cloud"),
        description="Folder for the embedded defaults: metadata.db, blobs/, lake/, admin.token.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("HYBRIDAI_DATABASE_URL", "HYBRIDAI_CLOUD_DATABASE_URL"),
        description="Metadata store URL: sqlite:///... (default: DATA_DIR/metadata.db) or "
        "postgresql://user@host/db (needs the [postgres] extra).",
    )
    blob_url: str | None = Field(
        default=None,
        description="Blob store for model artifacts: a folder, file:///PATH or "
        "s3://BUCKET/PREFIX (the bucket must exist; see BLOB_S3_*; needs the [s3] extra) "
        "(default: DATA_DIR/blobs).",
    )
    blob_s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint of an s3:// blob store; unset: LAKE_S3_ENDPOINT_URL (one "
        "store for both), else AWS S3.",
    )
    blob_s3_access_key_id: str | None = Field(
        default=None,
        description="Access key of an s3:// blob store; unset: LAKE_S3_ACCESS_KEY_ID, else the "
        "AWS credential chain.",
    )
    blob_s3_secret_access_key: SecretStr | None = Field(
        default=None,
        description="Secret key of an s3:// blob store (never logged or shown); unset: "
        "LAKE_S3_SECRET_ACCESS_KEY.",
    )
    blob_s3_region: str | None = Field(
        default=None, description="Region of an s3:// blob store's bucket; unset: LAKE_S3_REGION."
    )
    blob_s3_allow_http: bool | None = Field(
        default=None,
        description="Allow a plain http:// BLOB_S3_ENDPOINT_URL (a local test store only); "
        "unset: LAKE_S3_ALLOW_HTTP.",
    )
    lake_url: str | None = Field(
        default=None,
        description="Root of the Delta Lake tables: a folder, file:///PATH or "
        "s3://BUCKET/PREFIX (the bucket must exist; see LAKE_S3_*) (default: DATA_DIR/lake).",
    )
    lake_s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint of an s3:// lake on an S3-compatible store (MinIO, SeaweedFS, "
        "R2), e.g. http://127.0.0.1:8333; unset: AWS S3 (or AWS_ENDPOINT_URL). The store must "
        "honour conditional writes (If-None-Match), which safe concurrent commits rely on.",
    )
    lake_s3_access_key_id: str | None = Field(
        default=None,
        description="Access key of an s3:// lake; unset: the AWS credential chain "
        "(AWS_ACCESS_KEY_ID, profiles, instance roles).",
    )
    lake_s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret key of an s3:// lake (never logged or shown)."
    )
    lake_s3_region: str | None = Field(
        default=None, description="Region of an s3:// lake's bucket; unset: AWS_REGION."
    )
    lake_s3_allow_http: bool = Field(
        default=False,
        description="Allow a plain http:// LAKE_S3_ENDPOINT_URL (a local test store only).",
    )
    host: str = Field(default="127.0.0.1", description="Address the cloud API listens on.")
    port: int = Field(default=8400, description="Port the cloud API listens on.")
    grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the Open Inference Protocol gRPC service (GRPCInferenceService, "
        "e.g. for tritonclient.grpc) on HOST, over TLS with the API's certificate; callers "
        "send 'authorization: Bearer TOKEN' metadata as for the v2 REST routes. Unset: no gRPC.",
    )
    sync_interval_s: float = Field(
        default=2.0, gt=0, description="How often edges drain their backlog (sent to edges)."
    )
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, description="How often edges report status (sent to edges)."
    )
    rollout_tick_s: float = Field(
        default=2.0, gt=0, description="How often the cloud advances active rollouts."
    )
    retraining_tick_s: float = Field(
        default=10.0,
        gt=0,
        description="How often the cloud checks edge drift reports against each model's "
        "retraining policy.",
    )
    telemetry_raw_retention_s: float = Field(
        default=86400.0,
        gt=0,
        description="How long raw telemetry points (one per device report) are kept.",
    )
    telemetry_minute_retention_s: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="How long 1-minute telemetry buckets are kept.",
    )
    telemetry_hour_retention_s: float = Field(
        default=90 * 86400.0,
        gt=0,
        description="How long 1-hour telemetry buckets are kept.",
    )
    telemetry_compact_s: float = Field(
        default=30.0,
        gt=0,
        description="How often the cloud folds raw telemetry into 1-minute and 1-hour buckets "
        "and drops what is past retention.",
    )
    alert_eval_s: float = Field(
        default=5.0,
        gt=0,
        description="How often the cloud runs its anomaly detectors over recent telemetry.",
    )
    lease_ttl_s: float = Field(
        default=15.0,
        ge=1,
        description="How long a replica holds a ticker's lease (rollouts, retraining, alerts, "
        "compaction) without renewing it: another replica takes over this long after the "
        "holder dies.",
    )
    trusted_proxies: list[str] = Field(
        default=[],
        description="Addresses of load balancers (e.g. nginx) whose X-SSL-Client-Cert and "
        "X-Forwarded-For headers are believed: the device certificate the proxy verified and "
        "the caller's address, e.g. '[\"127.0.0.1\"]'. Empty: those headers are ignored.",
    )
    long_poll_recheck_s: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="How often a waiting desired-state long-poll rereads the store for a "
        "change (any replica may have made it); larger costs less per waiting device.",
    )
    alert_silent_after: float = Field(
        default=2.5,
        ge=1,
        description="A device is silent (alert) after this many heartbeat intervals without "
        "a report (2.5: two missed reports and half an interval of slack).",
    )
    alert_clock_skew_s: float = Field(
        default=30.0,
        gt=0,
        description="Alert when a device's clock is further than this from the cloud's.",
    )
    alert_disk_ratio: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Alert when a device's store uses more than this share of its disk quota.",
    )
    alert_drift_psi: float = Field(
        default=0.25,
        gt=0,
        description="Alert when a model's largest feature PSI at an edge exceeds this.",
    )
    alert_certificate_share: float = Field(
        default=0.15,
        gt=0,
        lt=1,
        description="Alert when less than this share of a device certificate's lifetime is "
        "left (edges renew when a third is left: below it, renewal has been failing).",
    )
    alert_sync_stalled_s: float = Field(
        default=3600.0,
        gt=0,
        description="Alert (sync stopped) when a device's oldest unsynced record is older than "
        "this; raise it above the longest closed period of a sync window.",
    )
    healing_rules_file: Path | None = Field(
        default=None,
        description="YAML file of self-healing rules (alert kind -> action); unset: the "
        "built-in rules (docs/alerts.md shows them). Checked at start.",
    )
    alert_webhooks: list[str] = Field(
        default=[],
        description="URLs that receive each alert as JSON (POST) when it fires and resolves, "
        "e.g. '[\"https://hooks.example.com/hybridai\"]'; retried with backoff.",
    )
    device_cert_lifetime_s: float = Field(
        default=86400.0,
        ge=60,
        description="Lifetime of a device certificate; edges renew when a third is left.",
    )
    tls_names: list[str] = Field(
        default=[],
        description="Extra DNS names or IP addresses for the cloud's server certificate "
        "(127.0.0.1, ::1 and localhost are always in it), e.g. '[\"cloud.example.com\"]'.",
    )
    ca_passphrase: SecretStr | None = Field(
        default=None,
        description="Encrypts the platform CA's private key at rest (DATA_DIR/pki/ca.key); "
        "needed at every start once set.",
    )

    signing_key_file: Path | None = Field(
        default=None,
        description="Ed25519 key that signs model artifacts (default: DATA_DIR/signing.key, "
        "created with mode 0600); replicas share one.",
    )
    stale_device_s: float = Field(
        default=900.0,
        gt=0,
        description="The compliance report flags devices not seen for longer than this.",
    )

    access_token_ttl_s: float = Field(
        default=900.0,
        ge=30,
        le=86400,
        description="Lifetime of a login's access token (signed with DATA_DIR/token.key, "
        "mode 0600; replicas share one); log in again after it.",
    )
    max_request_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        description="Largest request body the cloud API accepts (413 above); sync batches "
        "(64 MiB) and model uploads have their own limits.",
    )
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=1024,
        description="Largest model upload (POST /api/v1/models/NAME/versions) in bytes.",
    )
    max_batch_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="Most rows one sync batch may hold, read from its Parquet footer before it "
        "is decoded (413 payload_too_large above).",
    )
    max_batch_decoded_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Most bytes one sync batch may decode to (Parquet is compressed: a small "
        "body can hold a huge table), checked before and while it is decoded (413 above).",
    )
    execution_providers: list[ExecutionProvider] = Field(
        default=list(DEFAULT_PROVIDER_ORDER),
        min_length=1,
        description="ONNX Runtime execution providers the cloud runs models on, most preferred "
        'first, JSON, e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"]; those this '
        "machine lacks are skipped and the CPU is always the last resort. A model's own "
        "policy.runtime.execution_providers wins (docs/execution-providers.md).",
    )
    max_infer_json_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest JSON body of a v2 inference request, bytes (413 payload_too_large "
        "above). Parsed JSON tensors take 10-50 times their size in memory.",
    )

    lake_query_memory_mb: int = Field(
        default=512,
        ge=16,
        description="Memory one lake query may use (DuckDB's memory_limit); past it the query "
        "is refused with 422 query_limit.",
    )
    lake_query_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Time one lake query may run; it is interrupted then, and when its client "
        "disconnects.",
    )
    lake_query_max_rows: int = Field(
        default=1_000_000,
        ge=1,
        description="Most rows one lake query returns (a request's own limit may be lower).",
    )

    def resolved_signing_key_file(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing.key"

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'metadata.db'}"

    def resolved_blob_url(self) -> str:
        return self.blob_url or str(self.data_dir / "blobs")

    def resolved_lake_url(self) -> str:
        return self.lake_url or str(self.data_dir / "lake")

    def lake_s3(self) -> S3Options:
        """How to reach an s3:// lake (ignored for a local one)."""
        secret = self.lake_s3_secret_access_key
        return S3Options(
            endpoint_url=self.lake_s3_endpoint_url,
            access_key_id=self.lake_s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            region=self.lake_s3_region,
            allow_http=self.lake_s3_allow_http,
        )

    def blob_s3(self) -> S3Options:
        """How to reach an s3:// blob store: each BLOB_S3_* value, or the lake's when unset."""
        lake = self.lake_s3()
        secret = self.blob_s3_secret_access_key
        allow_http = self.blob_s3_allow_http
        return S3Options(
            endpoint_url=self.blob_s3_endpoint_url or lake.endpoint_url,
            access_key_id=self.blob_s3_access_key_id or lake.access_key_id,
            secret_access_key=secret.get_secret_value() if secret else lake.secret_access_key,
            region=self.blob_s3_region or lake.region,
            allow_http=lake.allow_http if allow_http is None else allow_http,
        )

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    def passphrase(self) -> str | None:
        return self.ca_passphrase.get_secret_value() if self.ca_passphrase else None
