"""What a run records besides its data: the code that trained it, reference histograms, rows.

The reference histograms (per feature, and of the served model's confidence, on the training
rows) travel with the version to every edge, which measures drift against them.

Row hashes identify rows by content (their float32 feature values, the way every model here
reads them), so data from elsewhere can be checked against a split without keeping the split:
an uploaded model records its test rows' hashes, and calibration refuses a file that shares one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from hybridai import __version__

Array = np.ndarray[Any, Any]
REFERENCE_BINS = 10
ROW_HASH_BYTES = 8  # 64 bits: a chance collision among a million rows is about 3e-8


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


def row_digests(x: Array) -> list[bytes]:
    """The content hash of each row of features (as float32, the models' input type)."""
    rows = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    rows = rows.reshape(len(rows), -1) + np.float32(0.0)  # -0.0 and 0.0 are one value
    return [hashlib.blake2b(r.tobytes(), digest_size=ROW_HASH_BYTES).digest() for r in rows]


def row_hashes(x: Array) -> set[bytes]:
    """The set of ``row_digests``: what a split is checked against."""
    return set(row_digests(x))


def pack_hashes(hashes: set[bytes]) -> str:
    """Row hashes as one base64 text (sorted), compact enough for a version's lineage."""
    return base64.b64encode(b"".join(sorted(hashes))).decode("ascii")


def unpack_hashes(text: str) -> set[bytes]:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) % ROW_HASH_BYTES:
        raise ValueError("row hashes are not a whole number of hashes")
    return {raw[i : i + ROW_HASH_BYTES] for i in range(0, len(raw), ROW_HASH_BYTES)}
