"""The edge router's cost: the placement decision alone, and the whole edge v2 HTTP path.

- ``place(...)`` in-process on a realistic snapshot (this node, two site peers, the cloud;
  latency policy with a budget), microseconds per decision, p50 / p99;
- sustained v2 requests/s at a real edge agent process (router, estimates, metrics, policy)
  against a bare FastAPI + onnxruntime endpoint serving the same ONNX model, both real uvicorn
  processes on loopback under the same client load (4 client threads), in the same run.

Usage: python bench/router.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, percentile, show, write
from infer import demo_models, http_rps, infer_body, plant_records

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port
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

BARE_APP = """
import sys
import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, Request

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(open(sys.argv[2], "rb").read(), options,
                               providers=["CPUExecutionProvider"])
names = [o.name for o in session.get_outputs()]
app = FastAPI()

@app.get("/v2/health/ready")
def ready():
    return {"ready": True}

@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request):
    body = await request.json()
    tensor = body["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    results = session.run(names, {tensor["name"]: x})
    return {"model_name": name, "outputs": [
        {"name": n, "shape": list(r.shape), "datatype": "FP32" if r.dtype == np.float32
         else "INT64", "data": r.reshape(-1).tolist()} for n, r in zip(names, results)]}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


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


def serve_bare(model: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port), str(model)])
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the bare endpoint", up, 30)
    return process, url


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
            for _ in range(50):  # warm both, and let the router learn its estimates
                reply = httpx.post(f"{edge.url}/v2/models/pm/infer", json=body, timeout=10)
                where = reply.json()["parameters"]["placement"]
                placements[where] = placements.get(where, 0) + 1
                httpx.post(f"{bare_url}/v2/models/pm/infer", json=body, timeout=10)
            edge_rps, bare_rps = [], []
            for _ in range(rounds):  # interleaved, so drifts in machine load hit both alike
                edge_rps.append(http_rps(edge.url, body, rps_s))
                bare_rps.append(http_rps(bare_url, body, rps_s))
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
        "rps_clients": 4,
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
