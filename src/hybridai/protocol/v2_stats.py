"""The v2 statistics and model repository extensions' schemas, in Triton's shape.

``tritonclient``'s ``get_inference_statistics`` and ``get_model_repository_index`` read them as
Triton writes them: durations are cumulative nanoseconds next to the count they add up over.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class StatDuration(BaseModel):
    count: int = 0
    ns: int = 0


class ModelInferenceStats(BaseModel):
    """Per model version: answered requests (``success``, ``fail``) and where their time went.

    ``queue`` is the wait for a worker, ``compute_infer`` the model run; decoding and encoding
    tensors happen around it (``compute_input``, ``compute_output``). There is no response cache,
    so ``cache_hit`` and ``cache_miss`` stay zero.
    """

    success: StatDuration = Field(default_factory=StatDuration)
    fail: StatDuration = Field(default_factory=StatDuration)
    queue: StatDuration = Field(default_factory=StatDuration)
    compute_input: StatDuration = Field(default_factory=StatDuration)
    compute_infer: StatDuration = Field(default_factory=StatDuration)
    compute_output: StatDuration = Field(default_factory=StatDuration)
    cache_hit: StatDuration = Field(default_factory=StatDuration)
    cache_miss: StatDuration = Field(default_factory=StatDuration)


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int = 0  # milliseconds since the epoch; 0 before the first
    inference_count: int = 0  # successful requests
    execution_count: int = 0  # model runs on this server (requests placed elsewhere: none)
    inference_stats: ModelInferenceStats = Field(default_factory=ModelInferenceStats)
    batch_stats: list[dict[str, object]] = Field(default_factory=list)


class ModelStatisticsResponse(BaseModel):
    model_stats: list[ModelStatistics]


class RepositoryIndexRequest(BaseModel):
    ready: bool = False  # true: only the models ready to serve


class RepositoryModel(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE", "LOADING"] = "READY"
    reason: str = ""
