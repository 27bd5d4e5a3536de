"""Dynamic batching at the edge: throughput and p99 with batching on vs off, same model, same run.

A real edge agent (enrolled with a local cloud) serves one small MLP (dense, 128 -> 2048 -> 2048 ->
2048 -> 4, dynamic batch dimension) under two names deployed from the same artifact: ``mlp`` runs
each request alone, ``mlp-batched`` has ``batching`` in its deployment (max 32 rows, no queue
delay: batches form from the requests that queue while the model runs). Both ``edge-only``.
``wrk`` (Debian; Lua body) drives 32 connections of 1-row requests at each, rounds alternated,
medians; without wrk an async httpx client with 32 concurrent requests is used (and named in
the notes: it measures the client as much as the server).

Usage: python bench/serving_batching.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).parent))
import _wrk
from _common import median, percentile, show, write

from hybridai.demo.fleet import LocalFleet, wait_for

CONNECTIONS = 32
FEATURES = 128
BATCHING = {"max_batch_size": 32, "max_queue_delay_ms": 0}
MODELS = {"off": "mlp", "on": "mlp-batched"}


def mlp_onnx(
    features: int = FEATURES, width: int = 2048, layers: int = 3, classes: int = 4
) -> bytes:
    """Dense layers with ReLU, softmax probabilities and an argmax label; batch dim dynamic."""
    rng = np.random.default_rng(7)
    sizes = [features] + [width] * layers + [classes]
    inits, nodes, current = [], [], "input"
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]))
        current = f"m{i}"
        if i < len(sizes) - 2:
            nodes.append(helper.make_node("Relu", [current], [f"h{i}"]))
            current = f"h{i}"
    nodes += [
        helper.make_node("Softmax", [current], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", features])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


def body() -> bytes:
    row = np.random.default_rng(1).standard_normal(FEATURES).round(4).tolist()
    request = {
        "inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32", "data": row}]
    }
    return json.dumps(request).encode()


def start(work: Path) -> tuple[LocalFleet, str]:
    """A cloud and one enrolled edge serving the MLP under both names."""
    fleet = LocalFleet(work)
    fleet.start_cloud()
    edge = fleet.start_edge("edge-1", "plant-a")
    fleet.wait_enrolled(1)
    artifact = mlp_onnx()
    for key, name in MODELS.items():
        files = {v: (f"{v}.onnx", artifact, "application/octet-stream") for v in ("edge", "cloud")}
        info = fleet.call("POST", f"/api/v1/models/{name}/versions", files=files)
        policy: dict[str, Any] = {"kind": "edge-only"}
        if key == "on":
            policy["batching"] = BATCHING
        deployment = {"name": name, "version": info["version"], "policy": policy}
        fleet.call("PUT", f"/api/v1/deployments/{name}", json=deployment)
        version = str(info["version"])
        wait_for(f"the edge to load {name}", partial(fleet.serving, name, version), 90)
    return fleet, edge.url


async def _client_round(url: str, payload: bytes, seconds: float) -> tuple[float, float]:
    """Fallback without wrk: 32 concurrent requests kept in flight; (requests/s, p99 ms)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CONNECTIONS)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                response = await client.post(url, content=payload, headers=headers)
                response.raise_for_status()
                latencies.append((time.perf_counter() - began) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(latencies, 99)


def one_round(edge_url: str, model: str, payload: bytes, seconds: float) -> tuple[float, float]:
    base, headers = _wrk.split_credentials(edge_url)
    url = f"{base}/v2/models/{model}/infer"
    if _wrk.available():
        run = _wrk.run(
            url,
            body=payload,
            headers={**headers, "Content-Type": "application/json"},
            seconds=seconds,
            connections=CONNECTIONS,
            threads=2,
        )
        return run.rps, run.p99_ms
    return asyncio.run(_client_round(f"{edge_url}/v2/models/{model}/infer", payload, seconds))


def batch_sizes(edge_url: str) -> float:
    """Mean rows per batch run at the edge, from its own metrics."""
    text = httpx.get(f"{edge_url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        for key in ("_sum", "_count"):
            if line.startswith(f"hybridai_edge_batch_rows{key}") and MODELS["on"] in line:
                values[key] = float(line.rsplit(" ", 1)[1])
    return values.get("_sum", 0.0) / max(values.get("_count", 0.0), 1.0)


def measure(quick: bool) -> dict[str, float]:
    """Requests/s and p99 at 32 connections, batching on and off, through one edge agent."""
    seconds = 3.0 if quick else 10.0
    rounds = 2 if quick else 3
    payload = body()
    results: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-batching-") as tmp:
        fleet, edge_url = start(Path(tmp))
        try:
            for key in ("off", "on"):  # warm both paths (sessions, connections, the batcher)
                one_round(edge_url, MODELS[key], payload, 1.0)
            for _ in range(rounds):
                for key in ("off", "on"):
                    results[key].append(one_round(edge_url, MODELS[key], payload, seconds))
            mean_rows = batch_sizes(edge_url)
        finally:
            fleet.close()
    on_rps = median([r for r, _ in results["on"]])
    off_rps = median([r for r, _ in results["off"]])
    return {
        "batching_throughput_ratio": round(on_rps / off_rps, 3),
        "batching_on_rps": round(on_rps, 1),
        "batching_off_rps": round(off_rps, 1),
        "batching_on_p99_ms": round(median([p for _, p in results["on"]]), 3),
        "batching_off_p99_ms": round(median([p for _, p in results["off"]]), 3),
        "batching_mean_batch_rows": round(mean_rows, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rounds (under a minute)")
    args = parser.parse_args()
    metrics = measure(args.quick)
    notes = {
        "load_generator": "wrk" if _wrk.available() else "httpx async client (wrk absent)",
        "connections": CONNECTIONS,
        "model": "MLP 128-2048-2048-2048-4, 1 row per request, edge-only",
        "batching": BATCHING,
    }
    show("dynamic batching at the edge (32 connections)", metrics)
    print(f"wrote {write('serving_batching', args.quick, metrics, notes)}")


if __name__ == "__main__":
    main()
