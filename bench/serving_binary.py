"""Binary tensor data vs JSON on the edge's v2 infer route: one 64x64 FP32 tensor each way.

A real cloud and edge agent serve a tiny ONNX model built here (MatMul of a [N, 64, 64] input
by a 64x64 weight); ``wrk`` posts the same tensor as v2 JSON (JSON output) and as the binary
tensor extension (binary input and output, what tritonclient sends by default), over the same
connection count, rounds alternated; the ratio is of the medians. The in-process codec cost of
each body (decode the request, encode the response) is reported next to it.

    python bench/serving_binary.py [--quick]   # writes bench/results/serving_binary.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import _wrk
import httpx
import numpy as np
import onnx
from _common import median, show, write
from onnx import TensorProto, helper, numpy_helper

from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.protocol.v2 import InferenceResponse
from hybridai.serving.v2_codec import decode_request, encode_response

MODEL = "square64"
SIDE = 64
CONNECTIONS = 8


def square_model() -> bytes:
    """y = x @ W for x [N, 64, 64] FP32: a 16 KiB tensor in, 16 KiB out."""
    weight = np.random.default_rng(0).standard_normal((SIDE, SIDE)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        MODEL,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", SIDE, SIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", SIDE, SIDE])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def bodies() -> tuple[bytes, bytes, str]:
    """The same request as v2 JSON and as the binary extension (and its header length)."""
    x = np.random.default_rng(1).standard_normal((1, SIDE, SIDE)).astype(np.float32)
    tensor = {"name": "x", "shape": list(x.shape), "datatype": "FP32"}
    hint = {"placement": "edge"}
    as_json = json.dumps(
        {"inputs": [{**tensor, "data": x.reshape(-1).tolist()}], "parameters": hint}
    ).encode()
    header = json.dumps(
        {
            "inputs": [{**tensor, "parameters": {"binary_data_size": x.nbytes}}],
            "parameters": {**hint, "binary_data_output": True},
        }
    ).encode()
    return as_json, header + x.tobytes(), str(len(header))


def codec_us(body: bytes, length: str | None, rounds: int = 300) -> float:
    """Median µs to decode this request and encode a like response, in process."""
    y = np.ones((1, SIDE, SIDE), dtype=np.float32)
    response = InferenceResponse.model_validate(
        {
            "model_name": MODEL,
            "outputs": [
                {
                    "name": "y",
                    "shape": [1, SIDE, SIDE],
                    "datatype": "FP32",
                    "data": y.ravel().tolist(),
                }
            ],
        }
    )
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        _, binary = decode_request(body, length)
        encode_response(response, binary)
        times.append((time.perf_counter() - began) * 1e6)
    return median(times)


def start(work: Path) -> tuple[LocalFleet, str, dict[str, str]]:
    fleet = LocalFleet(work)
    fleet.start_cloud()
    edge = fleet.start_edge("edge-1", "plant-a")
    fleet.wait_enrolled(1)
    onnx_bytes = square_model()
    files = {v: (f"{v}.onnx", onnx_bytes, "application/octet-stream") for v in ("edge", "cloud")}
    info = fleet.call("POST", f"/api/v1/models/{MODEL}/versions", files=files)
    fleet.call(
        "PUT", f"/api/v1/deployments/{MODEL}", json={"name": MODEL, "version": info["version"]}
    )
    wait_for("the edge to load the model", lambda: fleet.serving(MODEL, info["version"]), 90)
    url, auth = _wrk.split_credentials(edge.url)
    return fleet, url, auth


def measure(quick: bool) -> dict[str, Any]:
    """Requests/s of binary and JSON bodies against a real edge agent, and their ratio."""
    rounds, seconds = (2, 2.0) if quick else (5, 6.0)
    as_json, as_binary, length = bodies()
    json_runs: list[_wrk.WrkRun] = []
    binary_runs: list[_wrk.WrkRun] = []
    with tempfile.TemporaryDirectory(prefix="hybridai-bench-") as tmp:
        fleet, url, auth = start(Path(tmp))
        try:
            infer = f"{url}/v2/models/{MODEL}/infer"
            json_headers = {"Content-Type": "application/json", **auth}
            binary_headers = {
                "Content-Type": "application/octet-stream",
                "Inference-Header-Content-Length": length,
                **auth,
            }
            with httpx.Client(timeout=10) as http:  # warm up; check both answer alike
                for _ in range(50):
                    a = http.post(infer, content=as_json, headers=json_headers)
                    b = http.post(infer, content=as_binary, headers=binary_headers)
                a.raise_for_status()
                b.raise_for_status()
                assert a.json()["parameters"]["placement"] == "edge", a.text
                assert b.headers["content-type"] == "application/octet-stream", b.headers
            for _ in range(rounds):  # alternated: drifts in machine load hit both alike
                for body, headers, runs in (
                    (as_json, json_headers, json_runs),
                    (as_binary, binary_headers, binary_runs),
                ):
                    runs.append(
                        _wrk.run(
                            infer,
                            body=body,
                            headers=headers,
                            seconds=seconds,
                            connections=CONNECTIONS,
                        )
                    )
        finally:
            fleet.close()
    json_rps = median([r.rps for r in json_runs])
    binary_rps = median([r.rps for r in binary_runs])
    return {
        "binary_vs_json_rps_ratio": round(binary_rps / json_rps, 3),
        "binary_rps": round(binary_rps, 1),
        "json_rps": round(json_rps, 1),
        "binary_p50_ms": round(median([r.p50_ms for r in binary_runs]), 3),
        "json_p50_ms": round(median([r.p50_ms for r in json_runs]), 3),
        "binary_codec_us": round(codec_us(as_binary, length), 1),
        "json_codec_us": round(codec_us(as_json, None), 1),
        "binary_request_bytes": len(as_binary),
        "json_request_bytes": len(as_json),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    args = parser.parse_args()
    metrics = measure(args.quick)
    notes = {
        "load_generator": f"wrk, {CONNECTIONS} connections, the same for both bodies",
        "model": f"MatMul [N,{SIDE},{SIDE}] x [{SIDE},{SIDE}] FP32, batch 1, served by an edge",
        "codec_us": "in process: decode the request and encode a like response (median)",
    }
    show("binary tensor data vs JSON (edge v2 infer)", metrics)
    print(write("serving_binary", args.quick, metrics, notes))


if __name__ == "__main__":
    main()
