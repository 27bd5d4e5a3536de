"""Edge inference and ingest speed against their raw baselines, in one run.

- v2 infer p50 at a real edge process over HTTP vs the same ONNX model called in-process
  with onnxruntime (the floor any server pays on top of);
- sustained v2 requests/s at the edge with 4 concurrent clients;
- resident memory of the idle edge agent with the demo's model loaded;
- records/s ingested at the edge over HTTP vs raw SQLite inserts of the same records with the
  same durability (WAL, synchronous=FULL, one transaction per batch);
- bytes per record synced (Parquet zstd) vs the same records as JSON.

Usage: python bench/infer.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, percentile, show, sqlite_rate, write

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.training import train
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import FEATURES, Plant, pm_training_spec
from hybridai.edge.store.edge_store import PendingBatch, StoredRecord
from hybridai.edge.sync.batches import encode_batch


def plant_records(ticks: int, seed: int = 1) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    plant = Plant([f"m{i:02d}" for i in range(8)], seed=seed, start_ts=1.7e9)
    telemetry, failures = [], []
    for _ in range(ticks):
        t, f = plant.step()
        telemetry += t
        failures += f
    return telemetry, failures


def lake_table(records: list[dict[str, Any]], seq: int) -> pa.Table:
    rows = [
        {
            "record_id": f"bench:{seq}:{i}",
            "device_id": "bench",
            "site": "lab",
            "date": time.strftime("%Y-%m-%d", time.gmtime(r["ts"])),
            **r,
        }
        for i, r in enumerate(records)
    ]
    return pa.Table.from_pylist(rows)


def demo_models(workdir: Path) -> dict[str, bytes]:
    """The demo's pm model, trained by the product's own training job on plant data."""
    lake = Lake(str(workdir / "lake"))
    telemetry, failures = plant_records(1500)
    lake.commit_batch("telemetry", "bench", 1, lake_table(telemetry, 1))
    lake.commit_batch("failures", "bench", 2, lake_table(failures, 2))
    return train(lake, pm_training_spec()).artifacts


def infer_body(rows: np.ndarray[Any, Any]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": rows.reshape(-1).tolist(),
            }
        ],
        "parameters": {"placement": "edge"},
    }


def ort_p50(artifact: bytes, rows: np.ndarray[Any, Any], n: int) -> float:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
    for _ in range(50):
        session.run(None, {"input": rows})
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        session.run(None, {"input": rows})
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 50)


def http_p50(url: str, body: dict[str, Any], n: int) -> float:
    with httpx.Client(timeout=10) as http:
        for _ in range(30):
            http.post(f"{url}/v2/models/pm/infer", json=body).raise_for_status()
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            response = http.post(f"{url}/v2/models/pm/infer", json=body)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.json()["parameters"]["placement"] == "edge"
    return percentile(samples, 50)


def http_rps(url: str, body: dict[str, Any], seconds: float, clients: int = 4) -> float:
    counts = [0] * clients
    deadline = time.monotonic() + seconds

    def worker(i: int) -> None:
        with httpx.Client(timeout=10) as http:
            while time.monotonic() < deadline:
                http.post(f"{url}/v2/models/pm/infer", json=body).raise_for_status()
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def ingest_rate(url: str, batches: list[list[dict[str, Any]]]) -> float:
    with httpx.Client(timeout=30) as http:
        started = time.perf_counter()
        for batch in batches:
            http.post(
                f"{url}/api/v1/streams/bench/records", json={"records": batch}
            ).raise_for_status()
        elapsed = time.perf_counter() - started
    return sum(len(b) for b in batches) / elapsed


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wire_bytes(records: list[dict[str, Any]]) -> tuple[float, float]:
    stored = [
        StoredRecord(i, r["ts"], {k: v for k, v in r.items() if k != "ts"})
        for i, r in enumerate(records, 1)
    ]
    encoded = encode_batch(PendingBatch.of_records(1, "telemetry", stored), "edge-1", "plant-a")
    raw = json.dumps(records, separators=(",", ":")).encode()
    return len(encoded.body) / len(records), len(raw) / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    args = parser.parse_args()
    rounds, n, rps_s = (1, 200, 2.0) if args.quick else (5, 1000, 5.0)

    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        work = Path(tmp)
        models = demo_models(work)
        fleet = LocalFleet(work)
        try:
            fleet.start_cloud()
            edge = fleet.start_edge("edge-1", "plant-a")
            fleet.wait_enrolled(1)
            files = {
                v: (f"{v}.onnx", data, "application/octet-stream") for v, data in models.items()
            }
            info = fleet.call("POST", "/api/v1/models/pm/versions", files=files)
            fleet.call(
                "PUT", "/api/v1/deployments/pm", json={"name": "pm", "version": info["version"]}
            )
            wait_for("the edge to load pm", lambda: fleet.serving("pm", info["version"]), 60)
            time.sleep(1.0)
            rss = rss_mb(edge.process.pid)

            one_tick = plant_records(1)[0]  # 8 machines: one row each
            rows = np.asarray([[r[f] for f in FEATURES] for r in one_tick], dtype=np.float32)
            body = infer_body(rows)
            edge_p50 = [http_p50(edge.url, body, n) for _ in range(rounds)]
            ort = [ort_p50(models["edge"], rows, n) for _ in range(rounds)]
            rps = [http_rps(edge.url, body, rps_s) for _ in range(rounds)]

            telemetry, _ = plant_records(400 if args.quick else 1500, seed=3)
            batches = [telemetry[i : i + 500] for i in range(0, len(telemetry), 500)]
            ingest, raw = [], []
            for r in range(rounds):
                shifted = [[{**rec, "ts": rec["ts"] + r * 1e6} for rec in b] for b in batches]
                ingest.append(ingest_rate(edge.url, shifted))
                raw.append(sqlite_rate(work / f"raw{r}.db", shifted))
            parquet_per_record, json_per_record = wire_bytes(telemetry[:5000])
        finally:
            fleet.close()

    metrics = {
        "edge_http_p50_ms": round(median(edge_p50), 3),
        "ort_inprocess_p50_ms": round(median(ort), 4),
        "edge_http_over_ort_ratio": round(median(edge_p50) / median(ort), 1),
        "edge_http_rps": round(median(rps), 1),
        "edge_rss_mb": round(rss, 1),
        "edge_ingest_records_per_s": round(median(ingest), 0),
        "sqlite_raw_records_per_s": round(median(raw), 0),
        "ingest_vs_raw_sqlite_ratio": round(median(ingest) / median(raw), 3),
        "parquet_bytes_per_record": round(parquet_per_record, 2),
        "json_bytes_per_record": round(json_per_record, 2),
        "wire_bytes_ratio_vs_json": round(parquet_per_record / json_per_record, 4),
    }
    notes = {
        "rounds": rounds,
        "requests_per_round": n,
        "batch_rows": 8,
        "ingest_batch": 500,
        "rps_clients": 4,
        "model": "demo pm edge variant (depth-4 tree, ONNX)",
    }
    show("bench/infer" + (" (quick)" if args.quick else ""), metrics)
    print(write("infer", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
