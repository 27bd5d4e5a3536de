"""Dynamic batching settings of one model (Triton's ``dynamic_batching``, in milliseconds).

Set with a model's deployment (``PlacementPolicy.batching``), so the same settings reach every
edge and the cloud. Only a model whose inputs and outputs all have a dynamic first dimension
(the batch) can take them: the registry refuses the deployment otherwise.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_BATCH_SIZE = 4096  # rows; a bound on what one concatenated run may allocate
MAX_QUEUE_DELAY_MS = 1000.0


class BatchingSpec(BaseModel):
    """Concurrent requests of a model are queued, concatenated along dimension 0 and run once.

    A batch leaves the queue when it holds ``max_batch_size`` rows, when it can be cut at one of
    ``preferred_batch_sizes`` (the largest that the queued requests form), or when its oldest
    request has waited ``max_queue_delay_ms``. A request is never split across batches; one
    with more rows than ``max_batch_size`` runs alone.
    """

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(
        ge=1, le=MAX_BATCH_SIZE, description="Most rows (along dimension 0) one run takes."
    )
    max_queue_delay_ms: float = Field(
        default=0.0,
        ge=0.0,
        le=MAX_QUEUE_DELAY_MS,
        description="How long the oldest queued request may wait for others to join it; 0: "
        "never wait (batches still form from the requests that queued while the model ran).",
    )
    preferred_batch_sizes: list[int] = Field(
        default_factory=list,
        max_length=64,
        description="Row counts to cut a batch at as soon as the queue forms one (largest first).",
    )

    @model_validator(mode="after")
    def _sizes(self) -> BatchingSpec:
        for size in self.preferred_batch_sizes:
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(
                    f"preferred batch size {size} is outside 1..max_batch_size "
                    f"({self.max_batch_size}); list sizes the model may run"
                )
        self.preferred_batch_sizes = sorted(set(self.preferred_batch_sizes))
        return self
