"""Edge agent settings: each declared once, typed, with a default, help and an env variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from hybridai.protocol.fleet import DeviceKind


class EdgeSettings(BaseSettings):
    """Read from ``HYBRIDAI_EDGE_*`` environment variables, then ``.env``, then defaults."""

    model_config = SettingsConfigDict(env_prefix="HYBRIDAI_EDGE_", env_file=".env", extra="ignore")

    cloud_url: str = Field(
        default="http://127.0.0.1:8400", description="Base URL of the cloud control plane."
    )
    enroll_token: SecretStr | None = Field(
        default=None,
        description="One-time enrollment token from `hybridai fleet enroll-token`; needed only "
        "until the device holds a credential.",
    )
    device_id: str = Field(default="edge-1", description="This device's id in the fleet.")
    kind: DeviceKind = Field(default="edge-server", description="What kind of device this is.")
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
    batch_max_records: int = Field(default=5000, ge=1, description="Records per sync batch.")
    threads: int = Field(default=1, ge=1, description="ONNX Runtime intra-op threads per model.")
