"""Data policies: how each stream's fields are classified, redacted and retained.

Declared in the cloud, delivered to every edge in its desired state, applied at the edge before
a batch leaves the site (see ``hybridai.governance.policies``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

DataClass = Literal["public", "internal", "personal", "restricted"]
DATA_CLASSES: tuple[DataClass, ...] = ("public", "internal", "personal", "restricted")
STREAM_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
FIELD_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
PersonalAction = Literal["pseudonymise", "drop"]


def _check_retention(value: dict[DataClass, float]) -> dict[DataClass, float]:
    for data_class, days in value.items():
        if not days > 0:
            raise ValueError(f"retention for {data_class!r} must be > 0 days, got {days}")
    return value


class PolicySpec(BaseModel):
    """What an operator declares for one stream (``PUT /api/v1/policies/{stream}``)."""

    classification: DataClass = Field(
        default="internal",
        description="Class of the stream as a whole; 'restricted' keeps it on site entirely.",
    )
    fields: dict[str, DataClass] = Field(
        default_factory=dict, description="Class per field; unnamed fields take default_class."
    )
    default_class: DataClass = Field(default="internal", description="Class of unnamed fields.")
    personal: PersonalAction = Field(
        default="pseudonymise",
        description="What happens to personal fields before a batch leaves the edge.",
    )
    edge_retention_days: dict[DataClass, float] = Field(
        default_factory=dict,
        description="Days the edge keeps records holding data of each class (synced ones only).",
    )
    lake_retention_days: dict[DataClass, float] = Field(
        default_factory=dict, description="Days the lake keeps rows holding data of each class."
    )

    @field_validator("fields")
    @classmethod
    def _field_names(cls, value: dict[str, DataClass]) -> dict[str, DataClass]:
        import re

        pattern = re.compile(FIELD_PATTERN)
        for name in value:
            if not pattern.match(name):
                raise ValueError(f"field name {name!r} must match {FIELD_PATTERN}")
        return value

    _edge = field_validator("edge_retention_days")(_check_retention)
    _lake = field_validator("lake_retention_days")(_check_retention)


class DataPolicy(PolicySpec):
    """A declared policy as stored and delivered: the spec plus its stream and provenance."""

    stream: str = Field(pattern=STREAM_PATTERN)
    updated_at: float = 0.0
    updated_by: str = ""


class RetentionResult(BaseModel):
    """What one retention pass deleted from the lake, per stream."""

    deleted: dict[str, int] = Field(default_factory=dict)
    cutoffs: dict[str, float] = Field(default_factory=dict)
