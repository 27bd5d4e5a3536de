"""Drift at the edge: what each model served, over a window, against its training reference.

The router hands every locally served request to ``observe`` (an append of references, no
conversion or math on the request path); ``report`` converts them, bins the window with the
reference's cut points, computes per-feature PSI and the shift of mean confidence
(``orchestrator.drift``) and goes out with the heartbeat.
A new version of a model starts a new window: drift is always against the reference of the
version being served.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridai.orchestrator.drift import psi
from hybridai.protocol.fleet import ModelAssignment, ModelDrift
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse

DEFAULT_WINDOW = 500  # rows per model
Array = np.ndarray[Any, Any]


@dataclass
class _Window:
    version: str
    rows: deque[Array]
    confidences: deque[float]
    # Served (inputs, shape, probabilities, shape) not yet folded into rows: the request path
    # only appends references; ``report`` converts them (a request has at least one row).
    pending: deque[tuple[Any, list[int], Any, list[int] | None]]
    hard_examples: int = 0
    seen: int = field(default=0)

    def fold(self) -> None:
        while self.pending:
            data, shape, probabilities, probabilities_shape = self.pending.popleft()
            try:
                rows = np.asarray(data, dtype=np.float64).reshape(shape[0], -1)
            except (TypeError, ValueError):
                continue  # not a numeric matrix: nothing drift can measure
            self.rows.extend(rows)
            if probabilities is not None and probabilities_shape is not None:
                matrix = np.asarray(probabilities, dtype=np.float64).reshape(probabilities_shape)
                self.confidences.extend(matrix.max(axis=1).tolist())


def _counts(edges: list[float], values: Array) -> list[int]:
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
    return [int(c) for c in np.bincount(index, minlength=len(edges) + 1)]


class DriftMonitor:
    """Windows of served inputs and confidences per model; thread-unsafe by design (event loop)."""

    def __init__(
        self,
        assignments: Callable[[], list[ModelAssignment]],
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self._assignments = assignments
        self._size = window
        self._windows: dict[str, _Window] = {}

    def _window(self, name: str, version: str) -> _Window:
        current = self._windows.get(name)
        if current is None or current.version != version:
            size = self._size
            current = _Window(version, deque(maxlen=size), deque(maxlen=size), deque(maxlen=size))
            self._windows[name] = current
        return current

    def observe(
        self, name: str, version: str, request: InferenceRequest, response: InferenceResponse
    ) -> None:
        """Keep the request's feature rows and the model's confidence in them."""
        if not request.inputs:
            return
        tensor = request.inputs[0]
        if not tensor.shape:
            return
        window = self._window(name, version)
        window.seen += tensor.shape[0]
        probabilities = next(
            (o for o in response.outputs if o.name == "probabilities" and len(o.shape) == 2), None
        )
        window.pending.append(
            (
                tensor.data,
                tensor.shape,
                None if probabilities is None else probabilities.data,
                None if probabilities is None else probabilities.shape,
            )
        )

    def hard_example(self, name: str, version: str) -> None:
        self._window(name, version).hard_examples += 1

    def report(self) -> dict[str, ModelDrift]:
        """Per model served at the version its reference belongs to: PSI and confidence shift."""
        out: dict[str, ModelDrift] = {}
        for assignment in self._assignments():
            window = self._windows.get(assignment.name)
            reference = assignment.reference
            if window is not None:
                window.fold()
            if window is None or window.version != assignment.version or not reference:
                continue
            features: dict[str, Any] = reference.get("features") or {}
            scores: dict[str, float] = {}
            if window.rows:
                matrix = np.vstack(list(window.rows))
                for column, (feature, hist) in enumerate(features.items()):
                    if column < matrix.shape[1]:
                        counts = _counts(hist["edges"], matrix[:, column])
                        scores[feature] = round(psi(hist["fractions"], counts), 6)
            confidence_mean = float(np.mean(window.confidences)) if window.confidences else None
            reference_mean = (reference.get("confidence") or {}).get("mean")
            shift = 0.0
            if confidence_mean is not None and isinstance(reference_mean, int | float):
                shift = float(reference_mean) - confidence_mean
            out[assignment.name] = ModelDrift(
                version=window.version,
                window=len(window.rows),
                psi=scores,
                psi_max=max(scores.values(), default=0.0),
                confidence_mean=confidence_mean,
                confidence_shift=round(shift, 6),
                hard_examples=window.hard_examples,
            )
        return out
