"""PyTorch models (family ``mlp-torch``), exported with ``torch.onnx``; needs the [torch] extra.

Imported only when a pipeline names the family, so the cloud runs without torch. The exported
graph has the same contract as the scikit-learn exports: input ``input`` FP32 [n, features],
outputs ``label`` INT64 [n] and ``probabilities`` FP32 [n, k] for classes 0..k-1; the
standardisation is inside the graph, and layers are written as MatMul + Add so int8
quantization applies to them.
"""

from __future__ import annotations

import io
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
EXTRA_HINT = (
    "family 'mlp-torch' needs PyTorch: install the extra with `pip install 'hybridai[torch]'` "
    "on the cloud, or use family 'mlp' (scikit-learn)"
)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError(EXTRA_HINT) from None
    return torch


def fit_export(
    x: Array, y: Array, params: dict[str, Any], seed: int, input_name: str, opset: int
) -> tuple[bytes, Callable[[Array], Array], dict[str, Any]]:
    """Train a small MLP on ``x``/``y``; return ONNX bytes, a predict_proba and the params used."""
    torch = _torch()
    hidden = [int(h) for h in params.get("hidden_layer_sizes", (64, 32))]
    epochs = int(params.get("epochs", 300))
    lr = float(params.get("lr", 0.01))
    torch.manual_seed(seed)
    mean = torch.tensor(x.mean(axis=0), dtype=torch.float32)
    std = torch.tensor(x.std(axis=0) + 1e-6, dtype=torch.float32)
    k = max(int(y.max()) + 1, 2)  # labels are class indices 0..k-1 (``training._check_rows``)
    sizes = [x.shape[1], *hidden, k]

    class Mlp(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", mean)
            self.register_buffer("std", std)
            self.weights = torch.nn.ParameterList(
                torch.nn.Parameter(torch.randn(a, b) * (2.0 / a) ** 0.5)
                for a, b in itertools.pairwise(sizes)
            )
            self.biases = torch.nn.ParameterList(
                torch.nn.Parameter(torch.zeros(b)) for b in sizes[1:]
            )

        def logits(self, inputs: Any) -> Any:
            h = (inputs - self.mean) / self.std
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = torch.matmul(h, w) + b
                if i < len(self.weights) - 1:
                    h = torch.relu(h)
            return h

        def forward(self, inputs: Any) -> tuple[Any, Any]:
            probabilities = torch.softmax(self.logits(inputs), dim=1)
            return torch.argmax(probabilities, dim=1), probabilities

    model = Mlp()
    inputs = torch.tensor(x, dtype=torch.float32)
    targets = torch.tensor(y, dtype=torch.int64)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    weight = torch.tensor(len(y) / (k * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)  # balanced, like the sklearn families
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):  # full batch: training sets here are thousands of rows
        optimizer.zero_grad()
        loss = loss_fn(model.logits(inputs), targets)
        loss.backward()
        optimizer.step()
    model.eval()

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no extras
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (inputs[:1],),
            buffer,
            input_names=[input_name],
            output_names=["label", "probabilities"],
            dynamic_axes={input_name: {0: "n"}, "label": {0: "n"}, "probabilities": {0: "n"}},
            opset_version=opset,
            dynamo=False,
        )

    def predict_proba(rows: Array) -> Array:
        with torch.no_grad():
            return np.asarray(model(torch.tensor(rows, dtype=torch.float32))[1].numpy())

    used = {"hidden_layer_sizes": hidden, "epochs": epochs, "lr": lr, "torch": torch.__version__}
    return buffer.getvalue(), predict_proba, used
