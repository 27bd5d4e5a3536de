"""Hard examples: inputs the edge model was unsure of, with both models' answers.

A cascade escalation is exactly the data retraining wants most: the edge model doubted it and
the cloud model answered it. Each one becomes a flat record (tensors as JSON text) in the
``hard_examples`` stream of the edge store, which syncs to the lake like any other stream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hybridai.orchestrator import CascadeRule
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse

STREAM = "hard_examples"
HardExampleSink = Callable[[dict[str, Any]], Awaitable[None]]


def _tensors(items: list[Any]) -> str:
    return json.dumps(
        [t.model_dump(mode="json", exclude_none=True) for t in items], separators=(",", ":")
    )


def hard_example(
    device_id: str,
    model: str,
    request: InferenceRequest,
    edge: InferenceResponse,
    cloud: InferenceResponse,
    confidence: float,
    rule: CascadeRule,
    answered_by: str,
    input_stream: str | None = None,
) -> dict[str, Any]:
    """One escalated request as a flat store record.

    ``input_stream``: the stream feeding the model; its data policy decides what of the
    record leaves the site (``governance.egress``).
    """
    return {
        "input_stream": input_stream or "",
        "ts": time.time(),
        "model": model,
        "edge_version": edge.model_version,
        "cloud_version": cloud.model_version,
        "request_id": request.id,
        "answered_first_by": answered_by,
        "device": device_id,
        "confidence": float(confidence),
        "threshold": float(rule.threshold),
        "measure": rule.measure.value,
        "inputs": _tensors(request.inputs),
        "edge_outputs": _tensors(edge.outputs),
        "cloud_outputs": _tensors(cloud.outputs),
    }
