"""The edge's v2 gRPC service against its v2 REST route, driven the same way, same run.

A real cloud and edge agent (enrolled, site key, router, metrics) serve the demo's pm model
(edge variant); each request carries 8 rows and the hint ``placement: edge``. ``ghz`` is not at
hand, so the load comes from Python client processes, each an asyncio loop with several calls
in flight, as lean as a client gets: gRPC by grpc.aio (HTTP/2 streams on one channel, the
request message built once, as tritonclient sends it: raw tensor contents) and REST by a bare
HTTP/1.1 keep-alive client over asyncio streams (the body encoded once, one connection per
call in flight). Rounds alternate; the figures are medians. Each side's client CPU (user +
system, over the run's wall time and its processes) says whether the client, not the server,
was the limit: near 1.0 means it saturated.

    python bench/serving_grpc.py [--quick]   # writes bench/results/serving_grpc.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import median, show, write
from infer import demo_models

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port
from hybridai.demo.simulator import FEATURES

ROWS = 8
PROCESSES = 2  # client processes per side
IN_FLIGHT = 4  # calls in flight per client process: 8 streams / connections in all
SATURATED = 0.9  # client CPU share from which the client, not the server, is the limit

# One client process: ``mode target key seconds in_flight``; prints one JSON line.
LOAD = r"""
import asyncio, json, os, resource, sys, time
import numpy as np

mode, target, key, seconds, in_flight = sys.argv[1:6]
seconds, in_flight = float(seconds), int(in_flight)
rows = np.asarray(json.loads(sys.argv[6]), dtype=np.float32)

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

async def grpc_load():
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    request = service_pb2.ModelInferRequest(model_name="pm")
    request.inputs.add(name="input", datatype="FP32", shape=list(rows.shape))
    request.raw_input_contents.append(rows.tobytes())
    request.parameters["placement"].string_param = "edge"
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        call = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        for _ in range(20):
            await call(request, metadata=metadata, timeout=10)
        return await drive(lambda: call(request, metadata=metadata, timeout=10))

async def rest_load():
    host, port = target.split(":")
    body = json.dumps({"inputs": [{"name": "input", "shape": list(rows.shape),
                       "datatype": "FP32", "data": rows.reshape(-1).tolist()}],
                       "parameters": {"placement": "edge"}}).encode()
    head = (f"POST /v2/models/pm/infer HTTP/1.1\r\nHost: {target}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    connections = asyncio.Queue()
    for _ in range(in_flight):
        connections.put_nowait(await asyncio.open_connection(host, int(port)))

    async def one():
        reader, writer = await connections.get()
        writer.write(head + body)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await reader.readexactly(length)
        connections.put_nowait((reader, writer))
        if not status.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(status.decode().strip())

    for _ in range(20):
        await one()
    return await drive(one)

async def drive(call):
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal count
        while time.perf_counter() < deadline:
            await call()
            count += 1

    cpu0, wall0 = cpu(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return count, cpu() - cpu0, time.perf_counter() - wall0

count, cpu_s, wall_s = asyncio.run(grpc_load() if mode == "grpc" else rest_load())
print(json.dumps({"count": count, "cpu_s": cpu_s, "wall_s": wall_s}))
"""


def load(
    mode: str, target: str, key: str, seconds: float, rows: list[list[float]]
) -> dict[str, float]:
    """Requests/s of ``PROCESSES`` client processes together, and their CPU share."""
    args = [mode, target, key, str(seconds), str(IN_FLIGHT), json.dumps(rows)]
    children = [
        subprocess.Popen([sys.executable, "-c", LOAD, *args], stdout=subprocess.PIPE, text=True)
        for _ in range(PROCESSES)
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        if child.returncode != 0:
            raise RuntimeError(f"the {mode} client failed (exit {child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    wall = max(r["wall_s"] for r in results)
    return {
        "rps": sum(r["count"] for r in results) / wall,
        "client_cpu": sum(r["cpu_s"] for r in results) / (wall * PROCESSES),
    }


def start(work: Path) -> tuple[LocalFleet, str, str, str]:
    """A cloud and one enrolled edge with its gRPC port, serving the demo's pm model."""
    models = demo_models(work)
    grpc_port = free_port()
    fleet = LocalFleet(work)
    fleet.start_cloud()
    edge = fleet.start_edge("edge-1", "plant-a", env={"HYBRIDAI_EDGE_GRPC_PORT": str(grpc_port)})
    fleet.wait_enrolled(1)
    files = {v: (f"{v}.onnx", data, "application/octet-stream") for v, data in models.items()}
    info = fleet.call("POST", "/api/v1/models/pm/versions", files=files)
    fleet.call("PUT", "/api/v1/deployments/pm", json={"name": "pm", "version": info["version"]})
    wait_for("the edge to load pm", lambda: fleet.serving("pm", info["version"]), 90)
    rest = edge.url.rsplit("@", 1)[-1].removeprefix("http://")
    return fleet, f"127.0.0.1:{grpc_port}", rest, fleet.site_keys["plant-a"]


def measure(quick: bool) -> dict[str, Any]:
    """gRPC and REST requests/s on the same edge, measured alike; ratio and client CPU."""
    rounds, seconds = (1, 3.0) if quick else (3, 8.0)
    rows = np.random.default_rng(0).normal(size=(ROWS, len(FEATURES))).round(3).tolist()
    grpc_runs: list[dict[str, float]] = []
    rest_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        fleet, grpc_target, rest_target, key = start(Path(tmp))
        try:
            for _ in range(rounds):  # alternated: drifts in machine load hit both alike
                grpc_runs.append(load("grpc", grpc_target, key, seconds, rows))
                rest_runs.append(load("rest", rest_target, key, seconds, rows))
        finally:
            fleet.close()
    grpc_rps = median([r["rps"] for r in grpc_runs])
    rest_rps = median([r["rps"] for r in rest_runs])
    grpc_cpu = median([r["client_cpu"] for r in grpc_runs])
    rest_cpu = median([r["client_cpu"] for r in rest_runs])
    return {
        "grpc_rps": round(grpc_rps, 1),
        "grpc_rest_rps": round(rest_rps, 1),
        "grpc_vs_rest_rps_ratio": round(grpc_rps / rest_rps, 3),
        "grpc_client_cpu": round(grpc_cpu, 3),
        "grpc_rest_client_cpu": round(rest_cpu, 3),
        "grpc_client_saturated": grpc_cpu >= SATURATED,
        "grpc_rest_client_saturated": rest_cpu >= SATURATED,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    args = parser.parse_args()
    metrics = measure(args.quick)
    notes = {
        "load_generator": f"{PROCESSES} Python client processes x {IN_FLIGHT} calls in flight "
        "per side: grpc.aio (one channel each) and a bare HTTP/1.1 keep-alive client",
        "model": f"the demo's pm model (edge variant), {ROWS} rows a request, placement edge",
        "client_cpu": "client CPU seconds / (wall seconds x processes); >= "
        f"{SATURATED} means the client, not the edge, set the rate",
    }
    show("v2 gRPC vs REST on a real edge", metrics)
    print(write("serving_grpc", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
