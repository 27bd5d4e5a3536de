"""Deferral contract: which rule escalates a cascade's requests, and the learned router it ships.

A cascade escalates an edge answer to the cloud either by the edge model's own confidence
against a threshold (``threshold``) or by a small learned router (``router``): a model trained
on the validation split to predict whether the edge answer is right, from the input and the
edge model's outputs (as RouteLLM trains routers and learning-to-defer trains a rejector). The
router ships with the edge variant in its ``ModelAssignment``: ONNX bytes inline, with their
sha256 and an Ed25519 signature made like a model artifact's (variant ``router``), so an edge
verifies it under the same trusted key before it runs it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field

# The signature of a router covers (name, version, this variant, sha256): a model artifact's
# signature cannot be moved onto a router, nor one version's router onto another version.
ROUTER_VARIANT = "deferral-router"
MAX_ROUTER_BASE64 = 4_000_000  # ~3 MB of ONNX: a router is a few KB to a few hundred KB


class DeferralMethod(StrEnum):
    """Which rule decides that an edge answer goes to the cloud."""

    THRESHOLD = "threshold"  # the edge model's confidence measure below a calibrated threshold
    ROUTER = "router"  # the learned router's confidence below its calibrated threshold


class RouterSpec(BaseModel):
    """A learned deferral router: ONNX that maps a feature row to P(edge wrong), P(edge right).

    Its input row is the request's input row, then the edge model's class probabilities, then
    the three confidence measures (max_prob, margin, entropy): ``features`` values in all.
    """

    onnx: str = Field(max_length=MAX_ROUTER_BASE64, description="base64 of the ONNX model")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str | None = None
    threshold: float = Field(ge=0.0, description="escalate when P(edge right) < threshold")
    features: int = Field(ge=1)
    family: str = "gbm"


class DeferralSpec(BaseModel):
    """How a model version's cascade decides, as chosen by validation APGR (``apgr``)."""

    method: DeferralMethod = DeferralMethod.THRESHOLD
    router: RouterSpec | None = None
    apgr: dict[DeferralMethod, float] = Field(default_factory=dict)  # on the validation split


class DeferralChoice(StrEnum):
    """The method an operator asks for: ``auto`` takes the higher validation APGR."""

    AUTO = "auto"
    THRESHOLD = "threshold"
    ROUTER = "router"


class DeferralRequest(BaseModel):
    """Fit a version's learned router and choose its method: give exactly one target.

    Rows as for calibration: the version's own validation split, or labelled rows from a lake
    ``query`` with their ``label`` column.
    """

    target_cloud_share: float | None = Field(default=None, ge=0.0, le=1.0)
    target_accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    method: DeferralChoice = DeferralChoice.AUTO
    query: str | None = Field(default=None, min_length=1, max_length=100_000)
    label: str | None = Field(default=None, min_length=1)
    features: list[str] | None = Field(default=None, min_length=1)


class MethodFigures(BaseModel):
    """One method on one split: where its calibrated threshold lands, and its whole curve."""

    threshold: float
    cloud_share: float
    accuracy: float
    apgr: float | None = None
    cpt50: float | None = None
    cpt80: float | None = None


class SplitFigures(BaseModel):
    """Both methods on one split; ``role`` says what the split was used for."""

    role: str
    rows: int
    edge_alone_accuracy: float
    cloud_alone_accuracy: float
    methods: dict[DeferralMethod, MethodFigures]


class DeferralReport(BaseModel):
    """What ``POST .../deferral`` fitted, chose and stored, validation and test apart."""

    model: str
    version: str
    method: DeferralMethod  # what the version now ships
    chosen_by: str  # "validation APGR" or "named in the request"
    target_cloud_share: float | None = None
    target_accuracy: float | None = None
    threshold_measure: str
    router_family: str | None = None  # None: too few edge errors on validation to learn from
    router_bytes: int = 0
    validation: SplitFigures  # fitted here: router out of fold, thresholds calibrated here
    test: SplitFigures  # held out: measured once with what was fitted
    rows: str = "validation split"
    fitted_at: float = 0.0
