"""Model registry and training contract: versions, variants, metrics, lineage, deployments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from hybridai.protocol.fleet import Variant
from hybridai.protocol.placement import PlacementPolicy

MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class ArtifactInfo(BaseModel):
    variant: Variant
    sha256: str
    size: int
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    outputs: list[dict[str, Any]] = Field(default_factory=list)
    signature: str | None = None  # Ed25519, base64; None: registered unsigned


class ModelVersionInfo(BaseModel):
    name: str
    version: str  # "1", "2", ... assigned by the registry
    stage: Literal["candidate", "staged", "production", "archived"] = "candidate"
    artifacts: list[ArtifactInfo]
    metrics: dict[str, Any] = Field(default_factory=dict)  # per variant: {"edge": {...}, ...}
    lineage: dict[str, Any] = Field(default_factory=dict)
    registered_by: str
    created_at: float


class ModelSummary(BaseModel):
    name: str
    versions: list[str]
    deployed_version: str | None = None


class Deployment(BaseModel):
    """Which version of a model the fleet should run (the desired state's source)."""

    name: str
    version: str
    policy: PlacementPolicy | None = None  # how requests are placed; changeable by redeploying


class TrainingSpec(BaseModel):
    """A training run: a lake query that yields features and a label, and two model sizes.

    ``query`` is DuckDB SQL in which every lake dataset is a view named after it. The edge
    variant is small enough for a gateway; the cloud variant is the big model.
    """

    model_name: str = Field(pattern=MODEL_NAME_PATTERN)
    query: str
    features: list[str] = Field(min_length=1)
    label: str
    group: str | None = None  # column to split on, so held-out rows come from unseen groups
    edge_family: Literal["logistic", "tree", "forest", "gbm"] = "tree"
    cloud_family: Literal["logistic", "tree", "forest", "gbm"] = "gbm"
    test_share: float = Field(default=0.25, gt=0, lt=1)
    validation_share: float = Field(default=0.2, ge=0, lt=1)  # of the rows left after test
    seed: int = 0
    deploy: bool = True  # make the new version the fleet's desired version


class TrainingRun(BaseModel):
    run_id: str
    model_name: str
    status: Literal["running", "succeeded", "failed"]
    version: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    started_at: float
    finished_at: float | None = None
