"""The edge router's cost: the placement decision alone, and the whole edge v2 HTTP path.

- ``place(...)`` in-process on a realistic snapshot (this node, two site peers, the cloud;
  latency policy with a budget), microseconds per decision, p50 / p99;
- sustained v2 requests/s at a real edge agent process (router, estimates, metrics, policy)
  against a bare FastAPI + onnxruntime endpoint serving the same ONNX model, both real uvicorn
  processes on loopback under the same external load (``wrk``, 8 connections: a Python client
  saturates near these servers' rate and would measure itself), in the same run.

Usage: python bench/router.py [--quick]
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
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import _wrk
from _common import median, percentile, show, write
from infer import demo_models, infer_body, plant_records
from serving import CONNECTIONS, serve_bare

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.simulator import FEATURES
from hybridai.orchestrator import (
    Candidate,
    EdgeEstimate,
    LinkEstimate,
    ModelPolicy,
    PolicyKind,
    RequestFacts,
    Tier,
    place,
)


def decision_samples(n: int) -> list[float]:
    """Microseconds per ``place`` call on a warm, realistic snapshot."""
    edge = EdgeEstimate()
    link = LinkEstimate()
    for i in range(64):
        edge = edge.observe(0.8 + (i % 5) * 0.1, 0.05)
        link = link.observe(900, 12.0 + i % 3, service_ms=1.0)
    candidates = [
        Candidate(
            "gw-1",
            Tier.LOCAL,
            "edge",
            True,
            queue_depth=2,
            queue_budget=16,
            predicted_ms=edge.predict_ms(2),
        ),
        Candidate(
            "server-1",
            Tier.PEER,
            "edge",
            True,
            queue_depth=1,
            queue_budget=16,
            memory_free_mb=4096,
            predicted_ms=3.5,
        ),
        Candidate("server-2", Tier.PEER, None, False, predicted_ms=None),
        Candidate(
            "cloud", Tier.CLOUD, "cloud", True, predicted_ms=link.predict_ms(900), cost_per_call=1.0
        ),
    ]
    policy = ModelPolicy(PolicyKind.LATENCY, latency_budget_ms=20.0)
    facts = RequestFacts("pm", "internal", None, "auto")
    for _ in range(1000):
        place(facts, candidates, policy)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(n):
        started = clock()
        place(facts, candidates, policy)
        samples.append((clock() - started) / 1000.0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    args = parser.parse_args()
    rounds, n_decisions, rps_s = (1, 20_000, 2.0) if args.quick else (5, 200_000, 5.0)

    decisions = decision_samples(n_decisions)
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        work = Path(tmp)
        models = demo_models(work)
        (work / "edge.onnx").write_bytes(models["edge"])
        one_tick = plant_records(1)[0]
        rows = np.asarray([[r[f] for f in FEATURES] for r in one_tick], dtype=np.float32)
        body: dict[str, Any] = infer_body(rows)
        body.pop("parameters")  # the full placement path: no hint, the model's policy decides
        fleet = LocalFleet(work)
        bare, bare_url = serve_bare(work / "edge.onnx")
        placements: dict[str, int] = {}
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
            edge_url, auth = _wrk.split_credentials(edge.url)
            with httpx.Client(headers=auth, timeout=10) as http:
                for _ in range(50):  # warm both, and let the router learn its estimates
                    reply = http.post(f"{edge_url}/v2/models/pm/infer", json=body)
                    where = reply.json()["parameters"]["placement"]
                    placements[where] = placements.get(where, 0) + 1
                    http.post(f"{bare_url}/v2/models/pm/infer", json=body)
            payload = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **auth}
            edge_rps, bare_rps = [], []
            for _ in range(rounds):  # interleaved, so drifts in machine load hit both alike
                for url, rates in ((edge_url, edge_rps), (bare_url, bare_rps)):
                    run = _wrk.run(
                        f"{url}/v2/models/pm/infer",
                        body=payload,
                        headers=headers,
                        seconds=rps_s,
                        connections=CONNECTIONS,
                    )
                    rates.append(run.rps)
        finally:
            bare.terminate()
            bare.wait(10)
            fleet.close()

    metrics = {
        "decision_p50_us": round(percentile(decisions, 50), 2),
        "decision_p99_us": round(percentile(decisions, 99), 2),
        "edge_http_rps": round(median(edge_rps), 1),
        "bare_http_rps": round(median(bare_rps), 1),
        "edge_vs_bare_rps_ratio": round(median(edge_rps) / median(bare_rps), 3),
    }
    notes = {
        "rounds": rounds,
        "decisions": n_decisions,
        "candidates": "local + 2 site peers (one without the model) + cloud; latency policy",
        "load_generator": f"wrk -t1 -c{CONNECTIONS}",
        "rps_seconds_per_round": rps_s,
        "warm_up_placements": placements,
        "model": "demo pm edge variant (depth-4 tree, ONNX), 8 rows per request",
        "edge_rps_rounds": edge_rps,
        "bare_rps_rounds": bare_rps,
    }
    show("bench/router" + (" (quick)" if args.quick else ""), metrics)
    print(write("router", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
