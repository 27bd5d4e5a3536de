"""Cloud settings: each declared once, typed, with a default, help and an environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CloudSettings(BaseSettings):
    """Read from ``HYBRIDAI_CLOUD_*`` environment variables, then ``.env``, then defaults."""

    model_config = SettingsConfigDict(
        env_prefix="HYBRIDAI_CLOUD_", env_file=".env", extra="ignore", populate_by_name=True
    )

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
        default=None, description="Blob store for model artifacts (default: DATA_DIR/blobs)."
    )
    lake_url: str | None = Field(
        default=None, description="Root of the Delta Lake tables (default: DATA_DIR/lake)."
    )
    host: str = Field(default="127.0.0.1", description="Address the cloud API listens on.")
    port: int = Field(default=8400, description="Port the cloud API listens on.")
    sync_interval_s: float = Field(
        default=2.0, gt=0, description="How often edges drain their backlog (sent to edges)."
    )
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, description="How often edges report status (sent to edges)."
    )

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'metadata.db'}"

    def resolved_blob_url(self) -> str:
        return self.blob_url or str(self.data_dir / "blobs")

    def resolved_lake_url(self) -> str:
        return self.lake_url or str(self.data_dir / "lake")

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin.token"
