"""What a remote tier costs: the cloud forwarding to KServe vs running the model itself.

A real cloud process holds a small classifier (trained here with scikit-learn, ONNX) and serves
it from its own onnxruntime as ``clf``; a real KServe ModelServer (``tests/_kserve_server.py``)
serves the same file, and the cloud forwards ``clf-remote`` to it (a remote tier with a bearer
token). One client sends the same 8-row v2 request through the cloud to each, one at a time,
rounds alternated; ``remote_tier_overhead_ms`` is the p50 through the remote tier minus the p50
of the cloud's own runtime (same run). KServe called directly is shown for reference.

    python bench/serving_remote.py [--quick]   # writes bench/results/serving_remote.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import median, percentile, show, write
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import make_classification
from sklearn.tree import DecisionTreeClassifier

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port

SERVER = Path(__file__).resolve().parents[1] / "tests" / "_kserve_server.py"
TOKEN = "bench-remote-token"
ROWS = 8


def classifier() -> bytes:
    x, y = make_classification(n_samples=400, n_features=4, n_informative=3, n_redundant=0)
    model = DecisionTreeClassifier(max_depth=6, random_state=0).fit(x.astype(np.float32), y)
    onx = convert_sklearn(
        model,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": False}},
        target_opset=17,
    )
    return bytes(onx.SerializeToString())


def body() -> dict[str, Any]:
    data = np.random.default_rng(0).standard_normal((ROWS, 4)).astype(np.float32)
    return {
        "inputs": [
            {"name": "input", "shape": [ROWS, 4], "datatype": "FP32", "data": data.ravel().tolist()}
        ]
    }


def latencies(client: httpx.Client, path: str, count: int) -> list[float]:
    payload = body()
    for _ in range(10):  # warm-up: connections, first load
        response = client.post(path, json=payload)
        response.raise_for_status()
    found = []
    for _ in range(count):
        started = time.perf_counter()
        response = client.post(path, json=payload)
        found.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return found


def _kserve(onnx: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(SERVER), "--model_name", "clf", "--onnx", str(onnx)]
    args += ["--http_port", str(port), "--bearer_token_env", "KSERVE_TOKEN"]
    env = {**os.environ, "KSERVE_TOKEN": TOKEN}
    with log.open("ab") as out:
        process = subprocess.Popen(args, stdout=out, stderr=out, env=env)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"kserve exited: {log.read_text()[-1500:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).is_success
        except httpx.HTTPError:
            return False

    wait_for("kserve ready", ready, timeout_s=60)
    return process


def measure(quick: bool) -> dict[str, Any]:
    """p50 through the cloud to KServe vs the cloud's own runtime, same model, same run."""
    rounds, count = (2, 150) if quick else (5, 500)
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-remote-") as tmp:
        work = Path(tmp)
        onnx = classifier()
        (work / "clf.onnx").write_bytes(onnx)
        port = free_port()
        kserve = _kserve(work / "clf.onnx", port, work / "kserve.log")
        (work / "fleet").mkdir()
        fleet = LocalFleet(work / "fleet", {"KSERVE_TOKEN": TOKEN})
        try:
            fleet.start_cloud()
            version = fleet.call(
                "POST", "/api/v1/models/clf/versions", files={"cloud": ("cloud.onnx", onnx)}
            )["version"]
            fleet.call("PUT", "/api/v1/deployments/clf", json={"name": "clf", "version": version})
            fleet.call(
                "PUT",
                "/api/v1/models/clf-remote/remote",
                json={
                    "url": f"http://127.0.0.1:{port}",
                    "remote_model": "clf",
                    "auth": "bearer",
                    "secret": "env:KSERVE_TOKEN",
                },
            )
            assert fleet.api is not None
            direct = httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {TOKEN}"},
                timeout=30,
            )
            runs: dict[str, list[float]] = {"own": [], "remote": [], "direct": []}
            p50s: dict[str, list[float]] = {"own": [], "remote": [], "direct": []}
            for _ in range(rounds):
                for key, client, path in (
                    ("own", fleet.api, "/v2/models/clf/infer"),
                    ("remote", fleet.api, "/v2/models/clf-remote/infer"),
                    ("direct", direct, "/v2/models/clf/infer"),
                ):
                    found = latencies(client, path, count)
                    runs[key] += found
                    p50s[key].append(median(found))
            direct.close()
        finally:
            fleet.close()
            kserve.kill()
            kserve.wait(10)
    own, remote = median(p50s["own"]), median(p50s["remote"])
    return {
        "remote_tier_overhead_ms": round(remote - own, 3),
        "remote_tier_p50_ms": round(remote, 3),
        "remote_tier_p99_ms": round(percentile(runs["remote"], 99), 3),
        "cloud_runtime_p50_ms": round(own, 3),
        "kserve_direct_p50_ms": round(median(p50s["direct"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (< 1 minute)")
    args = parser.parse_args()
    started = time.monotonic()
    metrics = measure(args.quick)
    notes = {
        "rows_per_request": ROWS,
        "client": "one httpx client, sequential requests, keep-alive, rounds alternated",
        "seconds": round(time.monotonic() - started, 1),
    }
    show("remote tier (cloud -> KServe) vs the cloud's own runtime", metrics)
    print(write("serving_remote", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
