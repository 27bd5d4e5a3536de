"""What every benchmark shares: machine facts, medians, the results file and the table."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    import onnxruntime

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "onnxruntime": onnxruntime.__version__,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[index])


def write(name: str, quick: bool, metrics: dict[str, float], notes: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {
        "benchmark": name,
        "quick": quick,
        "machine": machine(),
        "metrics": metrics,
        "notes": notes,
    }
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def show(title: str, metrics: dict[str, float]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:,.3f}" if isinstance(value, float) else str(value))
    Console().print(table)


def sqlite_rate(path: Path, batches: list[list[dict[str, Any]]]) -> float:
    """The floor for ingest: the same records as JSON rows, same durability, no HTTP, no checks."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE IF NOT EXISTS r (id INTEGER PRIMARY KEY, ts REAL, payload TEXT)")
    started = time.perf_counter()
    for batch in batches:
        with db:
            db.executemany(
                "INSERT INTO r (ts, payload) VALUES (?, ?)",
                [(r["ts"], json.dumps(r, separators=(",", ":"))) for r in batch],
            )
    elapsed = time.perf_counter() - started
    db.close()
    return sum(len(b) for b in batches) / elapsed
