"""Edge agent settings: each declared once, typed, with a default, help and an env variable."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from hybridai import config_file
from hybridai.edge.ingest.schemas import StreamSchema
from hybridai.protocol.fleet import DeviceKind, Tags
from hybridai.protocol.runtime import DEFAULT_PROVIDER_ORDER, ExecutionProvider


class EdgeSettings(config_file.FileSettings):
    """Flags, then ``HYBRIDAI_EDGE_*`` variables, ``.env``, config.toml's ``[edge]``, defaults."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDAI_EDGE_", env_file=".env", extra="ignore")
    config_table: ClassVar[str] = "edge"

    cloud_url: str = Field(
        default="https://127.0.0.1:8400",
        description="Base URL of the cloud control plane (https: mTLS, TLS 1.3 only).",
    )
    ca_file: Path | None = Field(
        default=None,
        description="The platform CA to trust (the cloud's DATA_DIR/pki/ca.crt); needed to "
        "enroll, after which the CA the cloud sent is kept in DATA_DIR/tls/ca.crt.",
    )
    enroll_token: SecretStr | None = Field(
        default=None,
        description="One-time enrollment token from `hybridai fleet enroll-token`; needed only "
        "until the device holds a certificate (and again if it expired).",
    )
    device_id: str = Field(default="edge-1", description="This device's id in the fleet.")
    kind: DeviceKind = Field(default="edge-server", description="What kind of device this is.")
    tags: Tags = Field(
        default={},
        description='Tags this device declares when it enrolls, JSON, e.g. {"line": "3"}; '
        "rollouts select devices by tag. The enrollment token's tags win over these, and "
        "operators edit them later with `hybridai fleet tag`.",
    )
    data_dir: Path = Field(
        default=Path(".hybridai/edge"),
        description="Local store, cached models and desired state (survive restarts).",
    )
    host: str = Field(default="127.0.0.1", description="Address the edge API listens on.")
    port: int = Field(default=8500, description="Port the edge API listens on.")
    sync_interval_s: float = Field(
        default=2.0, gt=0, description="Backlog drain interval until the cloud sends its own."
    )
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, description="Status report interval until the cloud sends its own."
    )
    poll_wait_s: float = Field(
        default=10.0, ge=0, description="Long-poll wait for desired-state changes."
    )
    cloud_timeout_s: float = Field(
        default=2.0, gt=0, description="Longest wait for a cloud inference before the edge answers."
    )
    advertise_url: str | None = Field(
        default=None,
        description="URL at which site peers reach this edge's peer listener (reported to the "
        "cloud, which tells the site's other devices); default https://HOST:PEER_PORT.",
    )
    peer_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the peer listener: the same API over mutual TLS with the device "
        "certificate, for site peers (and LAN clients that want TLS); default PORT + 1. It "
        "opens once the device holds a certificate.",
    )
    grpc_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the Open Inference Protocol gRPC service (GRPCInferenceService, "
        "e.g. for tritonclient.grpc) on HOST, same placement and site-key auth as the v2 REST "
        "routes (metadata 'authorization: Bearer KEY'); plaintext like PORT unless GRPC_TLS. "
        "Unset: no gRPC.",
    )
    grpc_tls: bool = Field(
        default=False,
        description="Serve GRPC_PORT over TLS with the device certificate: clients verify it "
        "against the platform CA and the device id as the TLS name (gRPC's "
        "ssl_target_name_override); it then opens once the device holds a certificate.",
    )
    lan_auth: Literal["keys", "open"] = Field(
        default="keys",
        description="How the LAN API admits clients: keys (a site key from `hybridai site key "
        "create`, or a same-site device certificate on the peer listener) or open (anyone on "
        "the network: lab benches only; logged at start and shown in status).",
    )
    queue_budget: int = Field(
        default=16,
        ge=0,
        description="Requests in flight per model beyond which this node counts as overloaded "
        "and offloads (to a site peer or the cloud) where the model's policy allows.",
    )
    budget_margin_ms: float = Field(
        default=250.0,
        ge=0,
        description="A request waits at most its latency budget plus this margin for a cloud or "
        "peer that does not answer, then gets the on-site answer (flagged degraded).",
    )
    cloud_cost_per_call: float = Field(
        default=1.0,
        ge=0,
        description="Relative cost of one cloud inference; on-site calls cost 0 (the latency "
        "policy picks the cheapest place that meets the budget).",
    )
    probe_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="Refresh cloud latency estimates with a cheap round trip when no inference "
        "has gone to the cloud for this long.",
    )
    memory_mb: int | None = Field(
        default=None,
        ge=1,
        description="Memory this device offers to models (reported at enrollment, matched "
        "against a model policy's needs); default: physical memory.",
    )
    batch_max_records: int = Field(default=5000, ge=1, description="Records per sync batch.")
    threads: int = Field(default=1, ge=1, description="ONNX Runtime intra-op threads per model.")
    execution_providers: list[ExecutionProvider] = Field(
        default=list(DEFAULT_PROVIDER_ORDER),
        min_length=1,
        description="ONNX Runtime execution providers to run models on, most preferred first, "
        'JSON, e.g. ["CUDAExecutionProvider", "CPUExecutionProvider"]; those this machine '
        "lacks are skipped and the CPU is always the last resort. A model's own "
        "policy.runtime.execution_providers wins (docs/execution-providers.md).",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="Public key model signatures must verify under; default: pin the key the "
        "cloud first offers (DATA_DIR/models/trusted-signing-key.pub).",
    )
    pseudonym_key_file: Path | None = Field(
        default=None,
        description="HMAC key that pseudonymises personal fields before sync; never sent to the "
        "cloud. Share one file among a site's devices so pseudonyms agree (default: "
        "DATA_DIR/pseudonym.key, created per device).",
    )
    store_key_file: Path | None = Field(
        default=None,
        description="File holding the key (64 hex digits) that encrypts the local store's "
        "payloads with AES-GCM; encryption is off when neither this nor STORE_KEY is set.",
    )
    store_key: SecretStr | None = Field(
        default=None,
        description="The store encryption key itself (64 hex digits), if not from a file.",
    )
    bundle_file: Path | None = Field(
        default=None,
        description="A model bundle (`hybridai model bundle`) to serve from at first boot, "
        "before the cloud is reachable; ignored once the device holds a desired state.",
    )
    retention_interval_s: float = Field(
        default=60.0, gt=0, description="How often the edge applies its data retention periods."
    )
    max_clock_skew_s: float = Field(
        default=300.0,
        gt=0,
        description="Largest difference from the cloud's clock (measured on every answer) at "
        "which retention still deletes records; beyond it retention waits and certificate "
        "renewal follows the cloud's clock, and status says clock skew.",
    )
    stream_priorities: dict[str, str] = Field(
        default={},
        description="Sync priority class per stream (high, normal, low), JSON, over the "
        "defaults: alerts, failures, hard_examples high; telemetry low; others normal. High "
        "syncs first and is never evicted unsynced; the desired state's settings may override.",
    )
    stream_compression: dict[str, dict[str, object]] = Field(
        default={},
        description='Compression of slow numeric signals per stream, JSON, e.g. {"telemetry": '
        '{"method": "swinging_door", "fields": {"temperature": 0.5}, "key": '
        '["machine"]}} (method deadband or swinging_door; absolute tolerance per field).',
    )
    store_quota_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Disk quota of the local store's records, bytes; over it the lowest-priority "
        "synced data is evicted first, then unsynced low/normal data (counted, reported).",
    )
    batch_max_bytes: int = Field(
        default=4_000_000, ge=1, description="Most payload bytes per sync batch."
    )
    batch_max_wait_s: float = Field(
        default=1.0,
        ge=0,
        description="Longest a normal/low-priority batch waits to fill before it is sent "
        "anyway; high-priority streams never wait.",
    )
    sync_bandwidth_bytes_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Cap on the sync upload rate (token bucket), bytes/s; unset: no cap.",
    )
    sync_window: str | None = Field(
        default=None,
        description="Local times of day bulk sync may run, e.g. 22:00-06:00 (comma-separate "
        "several); outside them only high-priority streams sync. Unset: any time.",
    )
    max_ingest_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1024,
        description="Largest record batch body the ingest API accepts, bytes (413 "
        "payload_too_large above: split the batch). Parsed JSON records take about 8 times "
        "their size in memory.",
    )
    max_ingest_records: int = Field(
        default=1_000_000,
        ge=1,
        description="Most records one ingest body may hold, counted before any is built (Arrow "
        "IPC: from its message headers; 413 payload_too_large above).",
    )
    max_ingest_decoded_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Most bytes one Arrow IPC ingest body may decompress to, read from its "
        "buffer headers before anything is decompressed (413 payload_too_large above).",
    )
    max_infer_json_bytes: int = Field(
        default=2 * 1024 * 1024,
        ge=1024,
        description="Largest JSON body of a v2 inference request, bytes (413 payload_too_large "
        "above). Parsed JSON tensors take 10-50 times their size in memory.",
    )
    stream_schemas: dict[str, StreamSchema] = Field(
        default={},
        description='Declared record schemas per stream, JSON, e.g. {"telemetry": {"fields": '
        '{"machine": "string", "temperature": "number"}, "required": ["machine"], '
        '"closed": true}}; a stream not named here is held to the schema of its first batch.',
    )
    mqtt_url: str | None = Field(
        default=None,
        description="MQTT broker to ingest from, mqtt://HOST:PORT or mqtts://HOST:PORT (TLS); "
        "unset: no MQTT ingest.",
    )
    mqtt_topics: dict[str, str] = Field(
        default={},
        description='Topic filter -> stream, JSON, e.g. {"plant/+/telemetry": "telemetry"} '
        "(MQTT wildcards + and # allowed); subscribed with QoS 1.",
    )
    mqtt_client_id: str | None = Field(
        default=None,
        description="MQTT client id, stable across restarts so the broker keeps the session and "
        "redelivers unacknowledged messages; default hybridai-DEVICE_ID.",
    )
    mqtt_username: str | None = Field(default=None, description="MQTT user name, if any.")
    mqtt_password: SecretStr | None = Field(default=None, description="MQTT password, if any.")
    mqtt_ca_file: Path | None = Field(
        default=None,
        description="CA that signs the broker's certificate for mqtts:// (default: the system's).",
    )
