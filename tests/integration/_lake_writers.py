"""Lake writers for the multi-process tests: light to import, since each spawned child does.

A child started with the ``spawn`` context (deltalake's runtime does not survive ``fork``)
imports this module by name, so it imports only the lake, not the whole cloud app.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import pyarrow as pa

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.data.lake_storage import S3Options


def batch(
    device: str, seq: int, n: int = 5, at_site: str = "plant-a", **extra: list[Any]
) -> pa.Table:
    """Batch ``seq`` of ``device``: ``n`` rows with unique record ids over two dates."""
    columns: dict[str, list[Any]] = {
        "record_id": [f"{device}:{seq}:{i}" for i in range(n)],
        "device_id": [device] * n,
        "site": [at_site] * n,
        "ts": [1_700_000_000.0 + 86_400.0 * (i % 2) + seq for i in range(n)],
        "date": ["2023-11-14" if i % 2 == 0 else "2023-11-15" for i in range(n)],
        "value": [float(seq * 100 + i) for i in range(n)],
    }
    columns.update(extra)
    return pa.table(columns)


def commit_in_sequence(
    root: str, options: dict[str, Any], devices: list[str], batches: int
) -> list[tuple[str, int, bool]]:
    """One writer process: each device's batches in order, as a cloud replica receives them.

    Returns ``(device, seq, duplicate)`` per commit call.
    """
    lake = Lake(root, S3Options(**options))
    outcomes = []
    for seq in range(1, batches + 1):
        for device in devices:
            _version, duplicate = lake.commit_batch("telemetry", device, seq, batch(device, seq))
            outcomes.append((device, seq, duplicate))
    return outcomes


def writer_process(
    root: str,
    options: dict[str, Any],
    devices: list[str],
    batches: int,
    start: Any,  # a multiprocessing Barrier: every writer begins at once
    results: Any,  # a multiprocessing Queue: (began, ended, outcomes) or an error's text
) -> None:
    """The body of one spawned writer: open the lake, wait for the others, commit, report."""
    try:
        Lake(root, S3Options(**options)).versions()  # warm up before the race starts
        start.wait(timeout=120)
        began = time.monotonic()
        outcomes = commit_in_sequence(root, options, devices, batches)
        results.put((began, time.monotonic(), outcomes))
    except BaseException:
        results.put(traceback.format_exc())
        raise
