"""Batch ingest at an edge process over HTTP, per body format, against raw SQLite, in one run.

- records/s stored by a real edge agent (no cloud needed) over HTTP, one durable batch per
  request, for each format the route takes: JSON, MessagePack and Arrow IPC (bodies encoded
  before the clock starts: this measures what the edge sustains, not the producer);
- the floor: raw SQLite inserts of the same records as JSON rows with the same durability (WAL,
  synchronous=FULL, one transaction per batch), no HTTP, no checks, no de-duplication;
- the ratio of each format to that floor.

Usage: python bench/ingest.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, show, sqlite_rate, write

from hybridai.demo.lone_edge import LoneEdge
from hybridai.demo.simulator import Plant
from hybridai.edge.ingest.formats import ARROW, JSON, MSGPACK, encode_arrow, encode_msgpack

BATCH = 1000
Records = list[dict[str, Any]]
ENCODERS: dict[str, tuple[str, Callable[[Records], bytes]]] = {
    "json": (JSON, lambda r: json.dumps({"records": r}).encode()),
    "msgpack": (MSGPACK, encode_msgpack),
    "arrow": (ARROW, encode_arrow),
}


def telemetry(ticks: int, seed: int = 3) -> Records:
    plant = Plant([f"m{i:02d}" for i in range(8)], seed=seed, start_ts=1.7e9)
    records: Records = []
    for _ in range(ticks):
        records += plant.step()[0]
    return records


def edge_rate(url: str, stream: str, content_type: str, bodies: list[bytes], total: int) -> float:
    headers = {"Content-Type": content_type}
    with httpx.Client(base_url=url, timeout=60) as http:
        started = time.perf_counter()
        for body in bodies:
            response = http.post(f"/api/v1/streams/{stream}/records", content=body, headers=headers)
            response.raise_for_status()
        elapsed = time.perf_counter() - started
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    args = parser.parse_args()
    rounds, ticks = (1, 500) if args.quick else (5, 2500)
    records = telemetry(ticks)
    rates: dict[str, list[float]] = {name: [] for name in ENCODERS}
    raw: list[float] = []
    body_bytes: dict[str, float] = {}

    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        work = Path(tmp)
        with LoneEdge(work / "edge-ws") as edge:
            for r in range(rounds):
                # fresh timestamps each round and format: every record is new, none a duplicate
                for k, (name, (content_type, encode)) in enumerate(ENCODERS.items()):
                    shift = (r * len(ENCODERS) + k + 1) * 1e6
                    shifted = [{**rec, "ts": rec["ts"] + shift} for rec in records]
                    batches = [shifted[i : i + BATCH] for i in range(0, len(shifted), BATCH)]
                    bodies = [encode(b) for b in batches]
                    body_bytes[name] = sum(map(len, bodies)) / len(shifted)
                    rates[name].append(
                        edge_rate(edge.url, "bench", content_type, bodies, len(shifted))
                    )
                raw.append(sqlite_rate(work / f"raw{r}.db", batches))
            stored = edge.status()["store"]["records_ingested"]
    expected = rounds * len(ENCODERS) * len(records)
    assert stored == expected, f"the edge stored {stored} records, expected {expected}"

    floor = median(raw)
    metrics: dict[str, float] = {}
    for name, values in rates.items():
        metrics[f"ingest_{name}_records_per_s"] = round(median(values), 0)
    metrics["sqlite_raw_records_per_s"] = round(floor, 0)
    for name, values in rates.items():
        metrics[f"ingest_{name}_ratio_vs_raw_sqlite"] = round(median(values) / floor, 3)
    best = max(rates, key=lambda n: median(rates[n]))
    metrics["ingest_records_per_s"] = metrics[f"ingest_{best}_records_per_s"]
    metrics["ingest_ratio_vs_raw_sqlite"] = metrics[f"ingest_{best}_ratio_vs_raw_sqlite"]
    for name, size in body_bytes.items():
        metrics[f"{name}_body_bytes_per_record"] = round(size, 1)
    notes = {
        "rounds": rounds,
        "records_per_round_and_format": len(records),
        "batch_records": BATCH,
        "best_format": best,
        "edge": "one `hybridai edge run` process, no cloud reachable; schema inferred, enforced",
        "bodies": "encoded before timing; one HTTP request per batch, sequential, keep-alive",
    }
    show("bench/ingest" + (" (quick)" if args.quick else ""), metrics)
    print(write("ingest", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
