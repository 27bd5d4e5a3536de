"""What the router hands each step of carrying out a decision, and what it gets back.

One value instead of seven positional arguments: the model, the request, its weight on the
wire and the time by which the answer must be in (the latency budget) travel together from
the decision to the edge, a site peer or the cloud, to the fallback and to the cascade.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hybridai.protocol.v2 import InferenceRequest, InferenceResponse

Where = Literal["edge", "peer", "cloud"]


@dataclass(frozen=True)
class Call:
    """One request to run somewhere."""

    name: str
    version: str | None
    request: InferenceRequest
    n_bytes: int  # roughly what it weighs on the wire
    deadline: float  # ``time.perf_counter()`` by which the answer must be in
    all_outputs: bool = False  # a cascade needs every output (its confidence), not only those asked


@dataclass(frozen=True)
class Outcome:
    """An answer, where it was computed, and whether it is a degraded one."""

    response: InferenceResponse
    where: Where
    degraded: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)  # what a cascade measured
