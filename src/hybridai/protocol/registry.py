"""Model registry and training contract: versions, variants, metrics, lineage, deployments."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from hybridai.protocol.placement import PlacementPolicy, Variant
from hybridai.protocol.stages import Stage

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
    stage: Stage = "candidate"
    artifacts: list[ArtifactInfo]
    metrics: dict[str, Any] = Field(default_factory=dict)  # per variant: {"edge": {...}, ...}
    lineage: dict[str, Any] = Field(default_factory=dict)
    registered_by: str
    created_at: float


class ModelSummary(BaseModel):
    name: str
    versions: list[str]
    deployed_version: str | None = None
    stages: dict[str, str] = Field(default_factory=dict)  # version -> stage


class Deployment(BaseModel):
    """Which version of a model the fleet should run (the desired state's source)."""

    name: str
    version: str
    policy: PlacementPolicy | None = None  # how requests are placed; changeable by redeploying


Family = Literal["logistic", "tree", "forest", "gbm", "mlp", "mlp-torch"]


class EdgeBudget(BaseModel):
    """How much worse than the cloud variant, on held-out data, an edge variant may be."""

    metric: Literal["accuracy", "f1", "roc_auc", "precision", "recall", "r2"] = "accuracy"
    max_drop: float = Field(default=0.01, ge=0, le=1)


# Who labels a hard example: the cloud model's answer, a person's label (added later through
# the API), or a person's label where there is one and the cloud's answer elsewhere.
HardLabelSource = Literal["cloud", "human", "human-else-cloud"]


class HardExamplesSpec(BaseModel):
    """Add a model's hard examples (escalated inputs, labelled) to the training rows.

    They join the training split only: validation and test stay the query's rows, so a
    retrained version is measured on the same footing as the one before it.
    """

    label_source: HardLabelSource = "cloud"
    model: str | None = Field(default=None, pattern=MODEL_NAME_PATTERN)  # None: model_name
    max_rows: int = Field(default=100_000, ge=1)  # the newest rows first


class HardExampleLabel(BaseModel):
    """A person's label for one row of one escalated request (``request_id`` as recorded)."""

    request_id: str = Field(min_length=1, max_length=200)
    row: int = Field(default=0, ge=0)
    label: int = Field(ge=0)


class HardExampleLabels(BaseModel):
    labels: list[HardExampleLabel] = Field(min_length=1, max_length=100_000)


class HardExampleSummary(BaseModel):
    """What the lake holds of a model's hard examples, and how many rows each source labels."""

    model: str
    requests: int
    rows: int
    cloud_labelled: int
    human_labelled: int
    unreadable: int  # inputs withheld or pseudonymised by a data policy, or not decodable


class TrainingSpec(BaseModel):
    """A training run: a lake query that yields features and a label, and two model sizes.

    ``query`` is DuckDB SQL in which every lake stream is a view named after it. The edge
    variant is small enough for a gateway; the cloud variant is the big model.
    """

    model_name: str = Field(pattern=MODEL_NAME_PATTERN)
    query: str
    features: list[str] = Field(min_length=1)
    label: str
    # regression: each variant is a bagged ensemble answering its mean and its members' answers
    # (``params.<variant>.members``, default 5), so the cascade can escalate by their spread
    task: Literal["classification", "regression"] = "classification"
    group: str | None = None  # column to split on, so held-out rows come from unseen groups
    edge_family: Family = "tree"
    cloud_family: Family = "gbm"
    # "family": the edge variant is edge_family; "dynamic"/"static": the cloud model, int8.
    edge_variant: Literal["family", "dynamic", "static"] = "family"
    edge_budget: EdgeBudget | None = None  # refuse an edge variant worse than this
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per variant, per family
    metrics: list[str] = Field(default_factory=list)  # reported metrics (empty: all)
    test_share: float = Field(default=0.25, gt=0, lt=1)
    validation_share: float = Field(default=0.2, ge=0, lt=1)  # of the rows left after test
    seed: int = 0
    deploy: bool = True  # make the new version the fleet's desired version
    hard_examples: HardExamplesSpec | None = None  # add escalated inputs to the training rows


class TrainingRun(BaseModel):
    run_id: str
    model_name: str
    status: Literal["running", "succeeded", "failed"]
    version: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    started_at: float
    finished_at: float | None = None
