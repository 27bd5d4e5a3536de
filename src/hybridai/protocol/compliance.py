"""The compliance report: each security control checked against the running system."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ControlStatus = Literal["pass", "fail", "unknown"]


class ControlResult(BaseModel):
    control: str  # stable id, e.g. "tls_version"
    title: str
    status: ControlStatus
    detail: str  # what was found; for unknown, why it could not be checked


class ComplianceReport(BaseModel):
    generated_at: float
    passed: bool  # no control failed (unknown ones do not fail the report)
    controls: list[ControlResult] = Field(default_factory=list)
