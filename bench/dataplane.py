"""The edge data plane: durable ingest, bytes on the wire, and backlog drain under a cap.

- ingest: records/s into the edge store through its batch API (``EdgeStore.append`` of a list
  of records, durable: WAL, synchronous=FULL, one transaction per batch), against raw SQLite
  ``executemany`` of the same records, one row each, same durability, in the same run;
- wire: bytes per record of a sync batch of the demo's sensor telemetry (Parquet as the edge
  sends it) against the same records as JSON lines;
- drain: a real cloud and edge processes over loopback TLS, the edge capped in bytes/s, a
  backlog ingested at once: the steady rate at which the backlog reaches the cloud (bytes of
  batch bodies acknowledged per second, the first second of burst left out) over the cap.

Usage: python bench/dataplane.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, show, sqlite_rate, write

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import Plant
from hybridai.edge.store.edge_store import EdgeStore
from hybridai.edge.sync.batches import encode_batch

BATCH = 5000
Records = list[dict[str, Any]]


def telemetry(ticks: int, seed: int = 3, machines: int = 8) -> Records:
    plant = Plant([f"m{i:02d}" for i in range(machines)], seed=seed, start_ts=1.7e9)
    records: Records = []
    for _ in range(ticks):
        records += plant.step()[0]
    return records


def shifted(records: Records, by: float) -> Records:
    return [{**r, "ts": r["ts"] + by} for r in records]


def ingest(work: Path, records: Records, rounds: int) -> dict[str, float]:
    store_rates: list[float] = []
    arrow_rates: list[float] = []
    raw_rates: list[float] = []
    with EdgeStore(work / "edge.db") as store:
        for r in range(rounds):
            batches = [
                shifted(records[i : i + BATCH], (2 * r + 1) * 1e6)
                for i in range(0, len(records), BATCH)
            ]
            tables = [pa.Table.from_pylist(shifted(b, 1e6)) for b in batches]
            started = time.perf_counter()
            for batch in batches:
                store.append("telemetry", batch)
            store_rates.append(len(records) / (time.perf_counter() - started))
            started = time.perf_counter()
            for table in tables:
                store.append_table("telemetry", table)
            arrow_rates.append(len(records) / (time.perf_counter() - started))
            raw_rates.append(sqlite_rate(work / f"raw{r}.db", batches))
        stored = store.stats().records_ingested
    assert stored == 2 * rounds * len(records), f"stored {stored}: records were lost or merged"
    floor = median(raw_rates)
    return {
        "ingest_records_per_s": round(median(store_rates), 0),
        "ingest_ratio_vs_raw_sqlite": round(median(store_rates) / floor, 3),
        "ingest_arrow_records_per_s": round(median(arrow_rates), 0),
        "ingest_arrow_ratio_vs_raw_sqlite": round(median(arrow_rates) / floor, 3),
        "sqlite_raw_records_per_s": round(floor, 0),
    }


def wire(work: Path, records: Records) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for size in (1000, BATCH, 10000):
        part = records[:size]
        with EdgeStore(work / f"wire{size}.db") as store:
            store.append("telemetry", part)
            batch = store.next_batch(max_records=size)
        assert batch is not None and len(batch) == len(part)
        body = len(encode_batch(batch, "edge-1", "plant-a").body)
        lines = sum(len(json.dumps(r, separators=(",", ":"))) + 1 for r in part)
        metrics[f"wire_bytes_per_record_{size}"] = round(body / len(part), 2)
        metrics[f"json_bytes_per_record_{size}"] = round(lines / len(part), 2)
        metrics[f"wire_bytes_ratio_vs_json_{size}"] = round(body / lines, 4)
    metrics["wire_bytes_ratio_vs_json"] = metrics[f"wire_bytes_ratio_vs_json_{BATCH}"]
    return metrics


def drain(work: Path, records: Records, cap: int) -> dict[str, float]:
    env = {
        "HYBRIDAI_EDGE_SYNC_BANDWIDTH_BYTES_PER_S": str(cap),
        "HYBRIDAI_EDGE_BATCH_MAX_RECORDS": "1000",
        "HYBRIDAI_EDGE_SYNC_INTERVAL_S": "0.2",
    }
    (work / "fleet").mkdir()
    fleet = LocalFleet(work / "fleet", {"HYBRIDAI_CLOUD_SYNC_INTERVAL_S": "0.2"})
    try:
        fleet.start_cloud()
        fleet.start_edge("edge-d", "site-d", env=env)
        fleet.wait_enrolled(1)
        url = fleet.edges["edge-d"].url
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in range(0, len(records), BATCH):
                body = {"records": records[i : i + BATCH]}
                http.post("/api/v1/streams/telemetry/records", json=body).raise_for_status()
        samples: list[tuple[float, int, int]] = []

        def drained() -> bool:
            store = fleet.edge_status("edge-d")["store"]
            samples.append((time.monotonic(), store["bytes_synced"], store["backlog_records"]))
            return bool(store["backlog_records"] == 0)

        wait_for("the backlog to drain", drained, timeout_s=600, every_s=0.25)
    finally:
        fleet.close()
    start = next(t for t, sent, _ in samples if sent > 0) + 1.0  # past the bucket's burst
    steady = [s for s in samples if s[0] >= start and s[2] > 0]
    (t0, b0, _), (t1, b1, _) = steady[0], steady[-1]
    rate = (b1 - b0) / (t1 - t0)
    return {
        "drain_cap_bytes_per_s": float(cap),
        "drain_bytes_per_s": round(rate, 0),
        "drain_ratio_of_cap": round(rate / cap, 3),
        "drain_window_s": round(t1 - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    args = parser.parse_args()
    rounds, ticks, cap = (2, 1250, 20_000) if args.quick else (7, 5000, 20_000)
    records = telemetry(ticks)
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        work = Path(tmp)
        metrics = ingest(work, records, rounds)
        metrics.update(wire(work, telemetry(1250)))
        metrics.update(drain(work, telemetry(1250 if args.quick else 5000, seed=9), cap))
    notes = {
        "rounds": rounds,
        "records_per_round": len(records),
        "batch_records": BATCH,
        "ingest": "in-process EdgeStore.append (records) and append_table (Arrow), durable",
        "baseline": "raw sqlite3 executemany, one JSON row per record, WAL + synchronous=FULL",
        "wire": "demo sensor telemetry (8 machines), Parquet as sent vs JSON lines",
        "drain": "cloud + one edge process, loopback TLS, 1000-record batches",
    }
    show("bench/dataplane" + (" (quick)" if args.quick else ""), metrics)
    print(write("dataplane", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
