"""Edge variants: int8 quantization of the cloud model, the accuracy budget, size and latency.

Quantization uses ONNX Runtime's own tools, so what is measured here is what edges run.
Dynamic quantization stores weights as int8 and quantizes activations per call; static
quantization also fixes activation scales from calibration rows (training rows, never held-out
ones). Only graphs with MatMul / Gemm weights shrink: a tree ensemble has none, so a tree
model's edge variant is a smaller model instead (``edge_family``), judged by the same budget.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from hybridai.protocol.registry import EdgeBudget
from hybridai.serving.providers import create_session

Array = np.ndarray[Any, Any]
QUANTIZABLE_OPS = ("MatMul", "Gemm")
CALIBRATION_ROWS = 512
_LATENCY_RUNS = 200


class EdgeVariantError(ValueError):
    """No acceptable edge variant; the message says what to change in the pipeline."""


_ORT_WARNING = 2  # ONNX Runtime's default log severity (it offers no getter to restore from)
_ORT_ERROR = 3
_quiet_lock = threading.Lock()
_quiet_depth = 0
_stand_in: logging.Handler | None = None


class _QuantizationNoise(logging.Filter):
    """Drops what ONNX Runtime's quantization tools log below ERROR; passes everything else."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(self.folder)


@contextlib.contextmanager
def _quiet_quantization() -> Iterator[None]:
    """Silence ONNX Runtime's advice and warnings around a quantize call; errors still show.

    Its quantization tools log through the root logger (``logging.warning``), which would also
    configure logging for the whole process (``basicConfig``) if nothing had, and its
    calibration sessions log natively. Around the call: a root-logger filter drops only records
    from the quantization package below ERROR, a ``NullHandler`` stands in on an unconfigured
    root so nothing is configured behind the application's back, and the native logger reports
    errors only. Nested and concurrent calls share one setup.
    """
    global _quiet_depth, _stand_in
    import onnxruntime.quantization

    root = logging.getLogger()
    noise = _QuantizationNoise(str(Path(onnxruntime.quantization.__file__).parent))
    with _quiet_lock:
        if _quiet_depth == 0:
            ort.set_default_logger_severity(_ORT_ERROR)
            if not root.handlers:
                _stand_in = logging.NullHandler()
                root.addHandler(_stand_in)
        _quiet_depth += 1
        root.addFilter(noise)
    try:
        yield
    finally:
        with _quiet_lock:
            root.removeFilter(noise)
            _quiet_depth -= 1
            if _quiet_depth == 0:
                ort.set_default_logger_severity(_ORT_WARNING)
                if _stand_in is not None:
                    root.removeHandler(_stand_in)
                    _stand_in = None


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
    with _quiet_quantization(), tempfile.TemporaryDirectory(prefix="hybridai-quant-") as tmp:
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
    session = create_session(artifact, label="edge variant latency").session  # 1 CPU thread
    feed = {input_name: np.ascontiguousarray(row.reshape(1, -1), dtype=np.float32)}
    for _ in range(10):
        session.run(None, feed)
    samples = []
    for _ in range(runs):
        begun = time.perf_counter()
        session.run(None, feed)
        samples.append((time.perf_counter() - begun) * 1000)
    return float(np.median(samples))
