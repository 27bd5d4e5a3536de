"""What a run records besides its data: the code that trained it and reference histograms.

The reference histograms (per feature, and of the served model's confidence, on the training
rows) travel with the version to every edge, which measures drift against them.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hybridai import __version__

Array = np.ndarray[Any, Any]
REFERENCE_BINS = 10


@functools.cache
def code_version() -> dict[str, str]:
    """The package version and, when running from a git checkout, its commit."""
    commit = "unknown"
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            commit = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": f"hybridai {__version__}", "git_commit": commit}


def histogram(values: Array, bins: int = REFERENCE_BINS) -> dict[str, Any]:
    """Quantile cut points and the share of ``values`` in each bin (``bin_index`` semantics)."""
    values = np.asarray(values, dtype=np.float64)
    cuts = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(cuts, values, side="right")
    counts = np.bincount(index, minlength=len(cuts) + 1)
    return {
        "edges": [float(c) for c in cuts],
        "fractions": [float(c) / len(values) for c in counts],
        "mean": float(values.mean()),
    }


def reference(features: list[str], x: Array, confidence: Array) -> dict[str, Any]:
    """Per-feature histograms of the training rows and of the edge model's confidence on them."""
    return {
        "features": {name: histogram(x[:, i]) for i, name in enumerate(features)},
        "confidence": histogram(confidence),
        "rows": len(x),
    }
