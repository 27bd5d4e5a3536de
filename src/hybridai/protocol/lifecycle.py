"""Retraining policies on the wire: when the cloud retrains a model, and where the result goes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from hybridai.protocol.registry import HardLabelSource

RetrainingMode = Literal["manual", "auto-to-staged", "auto-to-production"]


class RetrainingPolicySpec(BaseModel):
    """Thresholds on what the model's edges report; any one passed starts a run.

    ``auto-to-production`` deploys the retrained version to the fleet, ``auto-to-staged``
    registers it as ``staged`` for a person (or a rollout) to promote, ``manual`` never retrains.
    """

    mode: RetrainingMode = "manual"
    psi_threshold: float = Field(default=0.25, gt=0)
    confidence_shift: float = Field(default=0.1, gt=0, le=1)
    hard_examples: int = Field(default=0, ge=0)  # 0: hard examples alone never trigger
    min_window: int = Field(default=50, ge=1)  # rows a device must have served to count
    cooldown_s: float = Field(default=300.0, ge=0)
    # a retraining run adds the model's hard examples to its training rows, labelled by this
    # source (None: as the deployed version's spec says)
    hard_example_labels: HardLabelSource | None = None


class RetrainingStatus(BaseModel):
    name: str
    policy: RetrainingPolicySpec
    last_triggered_at: float | None = None
    last_reason: str | None = None
    last_run_id: str | None = None
