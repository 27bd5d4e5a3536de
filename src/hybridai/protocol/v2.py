"""Open Inference Protocol (KServe v2) REST schemas, as the specification writes them.

hybridai-specific routing hints travel in ``parameters`` (see ``RoutingHints``); the response's
``parameters`` say where the request ran and why. Any v2 client works against edge and cloud.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from hybridai.protocol.policy import DataClass

Datatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
DATATYPES: tuple[str, ...] = Datatype.__args__  # type: ignore[attr-defined]

Parameters = dict[str, Any]
# A request's placement hint: let the policy choose, or ask for a tier.
PlacementHint = Literal["auto", "edge", "cloud"]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str] = Field(default_factory=list)


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]  # -1 marks a variable dimension


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: Parameters | None = None


class ModelReady(BaseModel):
    name: str
    ready: bool


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    # A list from JSON; a flat numpy array from the binary tensor extension (serving.v2_codec),
    # written as a list when the request is forwarded as JSON.
    data: list[Any]

    @field_serializer("data", when_used="json")
    def _data_as_list(self, data: Any) -> Any:
        tolist = getattr(data, "tolist", None)
        return tolist() if tolist is not None else data


class RequestOutput(BaseModel):
    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | None = None
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class RoutingHints(BaseModel):
    """hybridai's keys inside an inference request's ``parameters`` (all optional)."""

    model_config = ConfigDict(extra="ignore")

    latency_budget_ms: float | None = Field(default=None, gt=0)
    data_class: DataClass = "internal"
    placement: PlacementHint = "auto"

    @classmethod
    def from_parameters(cls, parameters: Parameters | None) -> RoutingHints:
        return cls.model_validate(parameters or {})
