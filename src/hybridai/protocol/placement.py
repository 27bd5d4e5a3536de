"""Placement contract: a model's placement policy, and the site peers a device may hand work to.

A ``PlacementPolicy`` is declared with a model's deployment and travels to every edge in its
``ModelAssignment``, so an operator changes how a model is placed at run time by deploying
again. ``SitePeer`` is what the cloud's registry knows of another device of the same site: the
edge router uses it as a candidate (data reaching a peer stays on site).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from hybridai.protocol.batching import BatchingSpec
from hybridai.protocol.policy import STREAM_PATTERN
from hybridai.protocol.runtime import RuntimeOptions

# A model's build for each tier, and where a self-healing order sends its requests
Variant = Literal["edge", "cloud"]


class PolicyKind(StrEnum):
    """How a model's requests are placed (the orchestrator's policies of the same names)."""

    EDGE_ONLY = "edge-only"
    CLOUD_ONLY = "cloud-only"
    LATENCY = "latency"
    CASCADE = "cascade"


class Measure(StrEnum):
    """The cascade's confidence measure of an edge answer."""

    MAX_PROB = "max_prob"
    MARGIN = "margin"
    ENTROPY = "entropy"
    BAND = "band"  # anomaly score vs its decision threshold
    SPREAD = "spread"  # regression: width of a predicted interval or of an ensemble's answers


class CascadeSpec(BaseModel):
    """Joint inference: escalate to the cloud when the edge's confidence < ``threshold``.

    ``threshold`` is fitted by ``hybridai model calibrate`` (None: use the one stored with the
    model version). ``output`` names the output holding class probabilities (or, for ``band``,
    anomaly scores; for ``spread``, per row the predicted quantiles or the ensemble members'
    answers); default: ``probabilities``, else the model's last output. ``band`` is also the
    spread at which a regression answer counts as wholly unsure.
    """

    measure: Measure = Measure.MARGIN
    threshold: float | None = Field(default=None, ge=0.0)
    score_threshold: float = 0.0
    band: float = Field(default=1.0, gt=0.0)
    output: str | None = None


class PlacementNeeds(BaseModel):
    """What a place must offer to run the model at all."""

    accelerator: str | None = None
    min_memory_mb: float = Field(default=0.0, ge=0.0)
    execution_provider: str | None = None  # an ONNX Runtime provider, e.g. "CUDAExecutionProvider"
    min_cores: int = Field(default=0, ge=0)


class PlacementPolicy(BaseModel):
    """How a model's requests are placed, and how a place runs it (``runtime``).

    Absent: ``latency`` with no default budget, each place's own runtime settings.
    """

    kind: PolicyKind = PolicyKind.LATENCY
    latency_budget_ms: float | None = Field(default=None, gt=0.0)
    cascade: CascadeSpec | None = None
    needs: PlacementNeeds = Field(default_factory=PlacementNeeds)
    input_stream: str | None = Field(
        default=None,
        pattern=STREAM_PATTERN,
        description="The stream whose records feed the model: its data policy applies to every "
        "request (a stream holding restricted data keeps the model on site, whatever a request "
        "says) and to the model's hard examples.",
    )
    runtime: RuntimeOptions | None = Field(
        default=None,
        description="How each place runs the model in ONNX Runtime: execution providers in "
        "order, their options, threads (None: each place's own settings).",
    )
    batching: BatchingSpec | None = Field(
        default=None,
        description="Dynamic batching of concurrent requests, at the edge and in the cloud "
        "(None: each request runs alone). Only for models with a dynamic batch dimension.",
    )


class SitePeer(BaseModel):
    """Another device of this device's site, as it last reported itself."""

    device_id: str
    kind: str
    url: str  # its local API (the edge's ``advertise_url``), reached over the site's LAN
    models: dict[str, str] = Field(default_factory=dict)  # ready model name -> version
    accelerator: str | None = None
    memory_mb: int | None = None
    queue_depth: int = 0
    utilisation: float = 0.0


class CalibrationRequest(BaseModel):
    """Fit a cascade threshold: give exactly one target.

    Rows: the version's own validation split (trained by hybridai), or labelled rows given
    here, from a lake ``query`` or an uploaded Parquet file, with their ``label`` column;
    ``features`` default to the training run's, else to every other column in order.
    """

    target_cloud_share: float | None = Field(default=None, ge=0.0, le=1.0)
    target_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    measure: Measure = Measure.MARGIN
    query: str | None = Field(default=None, min_length=1, max_length=100_000)
    label: str | None = Field(default=None, min_length=1)
    features: list[str] | None = Field(default=None, min_length=1)


class CurvePoint(BaseModel):
    """One operating point; thresholds 0 (never escalate) .. 2 (always) stay finite in JSON."""

    threshold: float
    cloud_share: float
    quality: float


# The split a figure was measured on: thresholds are fitted on validation, test is held out
SplitName = Literal["validation", "test"]


class SplitCurveFigures(BaseModel):
    """One split's own quality vs cloud-share curve, summarised; ``split`` names it."""

    split: SplitName
    role: str
    rows: int
    edge_alone: float
    cloud_alone: float
    cpt50: float | None = None  # cloud share recovering 50% of the edge-to-cloud gap
    cpt80: float | None = None
    apgr: float | None = None
    gap_recovered_at_30: float | None = None  # at exactly 30% cloud share, interpolated


class CalibrationReport(BaseModel):
    """A fitted threshold with the whole quality vs cloud-share curve of the validation split.

    The unprefixed figures (``edge_quality`` .. ``apgr``, ``curve``) are the validation
    split's; ``splits`` gives each split's curve figures under its own name.
    """

    model: str
    version: str
    measure: Measure
    target_cloud_share: float | None = None
    target_accuracy: float | None = None
    threshold: float
    met: bool  # False: the target accuracy is out of reach; the best point was chosen
    validation: CurvePoint  # what the threshold achieves on the validation split (fitted there)
    test: CurvePoint  # what it achieves on the held-out test split (reported, never fitted)
    edge_quality: float
    cloud_quality: float
    cpt50: float | None = None
    cpt80: float | None = None
    apgr: float | None = None
    n_validation: int
    n_test: int
    curve: list[CurvePoint] = Field(default_factory=list)  # validation, cloud share ascending
    fitted_at: float = 0.0
    rows: str = "validation split"  # where the validation rows came from
    guard: str = ""  # what was checked to keep training and test rows out of them
    band: float | None = None  # spread: the spread at which confidence is 0 (goes to the edge)
    splits: list[SplitCurveFigures] = Field(default_factory=list)  # validation, then test
