"""Edge variants: int8 quantization of the cloud model, the accuracy budget, size and latency.

Quantization uses ONNX Runtime's own tools, so what is measured here is what edges run.
Dynamic quantization stores weights as int8 and quantizes activations per call; static
quantization also fixes activation scales from calibration rows (training rows, never held-out
ones). Only graphs with MatMul / Gemm weights shrink: a tree ensemble has none, so a tree
model's edge variant is a smaller model instead (``edge_family``), judged by the same budget.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from hybridai.protocol.registry import EdgeBudget

Array = np.ndarray[Any, Any]
QUANTIZABLE_OPS = ("MatMul", "Gemm")
CALIBRATION_ROWS = 512
_LATENCY_RUNS = 200


class EdgeVariantError(ValueError):
    """No acceptable edge variant; the message says what to change in the pipeline."""


def _weights_to_quantize(artifact: bytes) -> int:
    model = onnx.load_model_from_string(artifact)
    return sum(1 for node in model.graph.node if node.op_type in QUANTIZABLE_OPS)


class _Rows:
    """The calibration reader ``quantize_static`` pulls input batches from."""

    def __init__(self, input_name: str, x: Array) -> None:
        self._batches = iter([{input_name: x[i : i + 64]} for i in range(0, len(x), 64)])

    def get_next(self) -> dict[str, Array] | None:
        return next(self._batches, None)


def quantize(artifact: bytes, mode: str, input_name: str, calibration: Array) -> bytes:
    """Return the int8 edge variant of ``artifact`` (``mode`` "dynamic" or "static")."""
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    if _weights_to_quantize(artifact) == 0:
        raise EdgeVariantError(
            "the cloud model has no MatMul/Gemm weights to quantize (tree ensembles and "
            "linear classifiers exported as ONNX-ML ops do not quantize): set edge.family to a "
            "smaller model (e.g. tree) instead of edge.quantize, or use family mlp / mlp-torch"
        )
    with tempfile.TemporaryDirectory(prefix="hybridai-quant-") as tmp:
        source, target = Path(tmp) / "cloud.onnx", Path(tmp) / "edge.onnx"
        source.write_bytes(artifact)
        if mode == "dynamic":
            quantize_dynamic(
                source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
            )
        elif mode == "static":
            rows = calibration[:CALIBRATION_ROWS].astype(np.float32)
            quantize_static(
                source,
                target,
                _Rows(input_name, rows),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZABLE_OPS),
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        else:
            raise EdgeVariantError(f"unknown quantization {mode!r}: use dynamic or static")
        return target.read_bytes()


def check_budget(
    budget: EdgeBudget | None, edge: dict[str, float], cloud: dict[str, float], how: str
) -> float:
    """Return edge - cloud on the budget's metric; refuse an edge variant beyond the budget."""
    metric = budget.metric if budget else "accuracy"
    delta = float(edge[metric] - cloud[metric])
    if budget is not None and -delta > budget.max_drop + 1e-12:
        raise EdgeVariantError(
            f"the edge variant ({how}) loses {-delta:.4f} {metric} on held-out data against the "
            f"cloud variant ({edge[metric]:.4f} vs {cloud[metric]:.4f}); the budget allows "
            f"{budget.max_drop:.4f}. The run fails and the fleet keeps its version: raise "
            "edge_budget.max_drop, try static quantization, or a larger edge family"
        )
    return delta


def latency_p50_ms(
    artifact: bytes, input_name: str, row: Array, runs: int = _LATENCY_RUNS
) -> float:
    """Median in-process latency of one single-row call, one thread, after a warm-up."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
    feed = {input_name: np.ascontiguousarray(row.reshape(1, -1), dtype=np.float32)}
    for _ in range(10):
        session.run(None, feed)
    samples = []
    for _ in range(runs):
        begun = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - begun) * 1000)
    return float(np.median(samples))
