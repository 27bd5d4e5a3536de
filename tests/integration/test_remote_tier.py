"""A model of a real cloud served by a real KServe ModelServer (issue 13.5), over loopback.

KServe (``tests/_kserve_server.py``) serves the same ONNX file the cloud holds, behind a bearer
token the cloud reads from its environment. Through the cloud's own v2 API: the remote answers
like the cloud's runtime and names its tier (REST JSON, the binary tensor extension and the
v2 gRPC service alike); the remote killed -> 503 ``upstream_unavailable``,
then the breaker opens -> 503 ``circuit_open`` at once; the remote restarted -> served again;
a remote answering garbage -> 502 ``bad_upstream_response``; a remote that hangs -> 504 within
the budget; a wrong credential -> 502 that says so. The secret is never shown or audited.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from typer.testing import CliRunner, Result

from _fleet import (
    MODEL,
    assert_probabilities,
    error_of,
    features,
    infer,
    local_fleet,
    upload_and_deploy,
)
from _models import train_classifier_onnx
from hybridai.cli.main import app as cli_app
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port

pytestmark = pytest.mark.slow

TOKEN = "kserve-token-7f3a9c1e"  # what the cloud must send, and must never show
SERVER = Path(__file__).resolve().parents[1] / "_kserve_server.py"


class KServe:
    """A KServe ModelServer in a subprocess on a fixed loopback port (restartable)."""

    def __init__(self, onnx: Path, port: int, log: Path) -> None:
        self.onnx, self.port, self.log = onnx, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [sys.executable, str(SERVER), "--model_name", MODEL, "--onnx", str(self.onnx)]
        args += ["--http_port", str(self.port), "--bearer_token_env", "KSERVE_TOKEN"]
        env = {"KSERVE_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log, env=env)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"kserve exited: {self.log.read_text()[-2000:]}")
            try:
                return httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("kserve ready", ready, timeout_s=60)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class _Odd(http.server.BaseHTTPRequestHandler):
    """A server that is no v2 server: 200 with garbage, or an answer after 30 s."""

    def do_GET(self) -> None:
        self._answer(b'{"ready": true}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/v2/models/slow"):
            time.sleep(30)
        self._answer(b'{"outputs": "surely not a tensor list"}')

    def _answer(self, body: bytes) -> None:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the cloud gave up first (the slow case)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def odd_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Odd)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    env = {"KSERVE_TOKEN": TOKEN, "WRONG_TOKEN": "not-the-token"}
    env["HYBRIDAI_CLOUD_GRPC_PORT"] = str(free_port())
    with local_fleet(tmp_path / "fleet", cloud_env=env) as running:
        yield running


def _grpc_infer(fleet: LocalFleet) -> tuple[np.ndarray[Any, Any], dict[str, Any]]:
    """The same request over the cloud's v2 gRPC service: probabilities and parameters."""
    assert fleet.api is not None
    token = fleet.api.headers["Authorization"]
    target = f"127.0.0.1:{fleet.cloud_env['HYBRIDAI_CLOUD_GRPC_PORT']}"
    with triton.InferenceServerClient(
        target, ssl=True, root_certificates=str(fleet.ca_file)
    ) as client:
        tensor = triton.InferInput("input", [3, 4], "FP32")
        tensor.set_data_from_numpy(np.asarray(features(3), dtype=np.float32))
        result = client.infer(MODEL, [tensor], headers={"authorization": token})
    parameters = {}
    for key, parameter in result.get_response().parameters.items():
        parameters[key] = getattr(parameter, parameter.WhichOneof("parameter_choice"))
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None
    return probabilities, parameters


def _remote(fleet: LocalFleet, **config: Any) -> httpx.Response:
    assert fleet.api is not None
    return fleet.api.put(f"/api/v1/models/{MODEL}/remote", json=config)


def _cli(fleet: LocalFleet, *args: str) -> Result:
    assert fleet.cloud is not None
    env = {
        "HYBRIDAI_CLOUD_URL": fleet.cloud.url,
        "HYBRIDAI_TOKEN": (fleet.workspace / "cloud" / "admin.token").read_text().strip(),
        "HYBRIDAI_CA_FILE": str(fleet.ca_file),
        "COLUMNS": "200",
    }
    return CliRunner().invoke(cli_app, list(args), env=env)


def _viewer(fleet: LocalFleet) -> dict[str, str]:
    """A viewer's bearer header: one who may read a remote tier, not change it."""
    assert fleet.api is not None
    password = "correct horse battery staple 42"
    user = {"name": "vera", "role": "viewer", "password": password}
    assert fleet.api.post("/api/v1/users", json=user).status_code == 201
    login = fleet.api.post("/api/v1/auth/login", json={"username": "vera", "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _binary_infer(api: httpx.Client) -> dict[str, np.ndarray[Any, Any]]:
    """A 3-row request with a binary input, asking for binary outputs; the decoded outputs."""
    raw = np.asarray(features(3), dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    answer = api.post(
        f"/v2/models/{MODEL}/infer",
        content=header + raw,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["Inference-Header-Content-Length"])
    offset, found = length, {}
    for output in json.loads(answer.content[:length])["outputs"]:
        size = output["parameters"]["binary_data_size"]
        dtype = {"FP32": np.float32, "INT64": np.int64}[output["datatype"]]
        data = np.frombuffer(answer.content[offset : offset + size], dtype=dtype)
        found[output["name"]] = data.reshape(output["shape"])
        offset += size
    return found


def _timed_infer(fleet: LocalFleet) -> tuple[httpx.Response, float]:
    assert fleet.api is not None
    started = time.monotonic()
    response = infer(fleet.api)
    return response, time.monotonic() - started


def test_the_cloud_forwards_to_kserve_fails_fast_while_it_is_down_and_recovers(
    fleet: LocalFleet, tmp_path: Path, odd_server: str
) -> None:
    onnx = train_classifier_onnx()
    (tmp_path / "pm.onnx").write_bytes(onnx)
    kserve = KServe(tmp_path / "pm.onnx", free_port(), tmp_path / "kserve.log")
    kserve.start()
    try:
        _forwarding(fleet, kserve, odd_server)
    finally:
        kserve.kill()


def _forwarding(fleet: LocalFleet, kserve: KServe, odd_server: str) -> None:
    assert fleet.api is not None
    upload_and_deploy(fleet, train_classifier_onnx())
    local = infer(fleet.api)
    local_parameters = assert_probabilities(local)
    assert "tier" not in local_parameters

    # A secret given as a value, or auth without one: refused before anything is stored.
    pasted = _remote(fleet, url=kserve.url, auth="bearer", secret=TOKEN)
    assert error_of(pasted)[0] == 400 and TOKEN not in pasted.text
    assert error_of(_remote(fleet, url=kserve.url, auth="bearer"))[0] == 400
    unset = _remote(fleet, url=kserve.url, auth="bearer", secret="env:NOT_SET_ANYWHERE")
    assert error_of(unset) == (400, "bad_request") and "NOT_SET_ANYWHERE" in unset.text
    assert error_of(_remote(fleet, url="ftp://127.0.0.1/"))[0] == 400
    bad_name = fleet.api.put("/api/v1/models/bad..name/remote", json={"url": kserve.url})
    assert error_of(bad_name) == (400, "invalid_name")
    stranger = httpx.put(
        f"{fleet.cloud.url if fleet.cloud else ''}/api/v1/models/{MODEL}/remote",
        json={"url": kserve.url},
        verify=fleet.verify(),
    )
    assert error_of(stranger) == (401, "unauthenticated")

    config = {
        "url": kserve.url,
        "auth": "bearer",
        "secret": "env:KSERVE_TOKEN",
        "timeout_s": 3,
        "retries": 1,
        "breaker_failures": 2,
        "breaker_cooldown_s": 2,
    }
    viewer = _viewer(fleet)
    forbidden = fleet.api.put(f"/api/v1/models/{MODEL}/remote", json=config, headers=viewer)
    assert error_of(forbidden) == (403, "forbidden")
    args = ["--url", kserve.url, "--auth", "bearer", "--secret", "env:KSERVE_TOKEN"]
    args += ["--timeout", "3", "--retries", "1", "--breaker-failures", "2"]
    made = _cli(fleet, "model", "remote", "set", MODEL, *args, "--breaker-cooldown", "2")
    assert made.exit_code == 0 and f"served by {kserve.url}" in made.output, made.output
    shown_cli = _cli(fleet, "model", "remote", "show", MODEL)
    assert shown_cli.exit_code == 0 and "env:KSERVE_TOKEN" in shown_cli.output
    assert TOKEN not in shown_cli.output
    listed = _cli(fleet, "model", "remote", "show", "--json")
    assert listed.exit_code == 0 and json.loads(listed.output)[0]["config"] == {
        **json.loads(listed.output)[0]["config"],
        **config,
    }
    read = fleet.api.get(f"/api/v1/models/{MODEL}/remote", headers=viewer)
    assert read.status_code == 200 and read.json()["updated_by"] == "bootstrap-admin"

    remote = infer(fleet.api)
    parameters = assert_probabilities(remote)
    assert parameters["tier"] == "remote" and parameters["reason"] == "served_by_remote"
    assert parameters["remote_server"] == f"127.0.0.1:{kserve.port}"
    assert remote.json()["model_name"] == MODEL
    by_name = {o["name"]: o["data"] for o in remote.json()["outputs"]}
    local_by_name = {o["name"]: o["data"] for o in local.json()["outputs"]}
    assert by_name["label"] == local_by_name["label"]
    assert by_name["probabilities"] == pytest.approx(local_by_name["probabilities"], abs=1e-6)

    # The v2 gRPC service shares the backend: a remote-tier model is forwarded from there too.
    probabilities, grpc_parameters = _grpc_infer(fleet)
    assert grpc_parameters["tier"] == "remote"
    assert probabilities.ravel().tolist() == pytest.approx(local_by_name["probabilities"], abs=1e-6)

    # The binary tensor extension (tritonclient's default) through the remote tier as well.
    tensors = _binary_infer(fleet.api)
    assert tensors["label"].tolist() == local_by_name["label"]
    assert tensors["probabilities"].ravel().tolist() == pytest.approx(
        local_by_name["probabilities"], abs=1e-6
    )

    metadata = fleet.call("GET", f"/v2/models/{MODEL}")  # KServe's, under the cloud's name
    assert metadata["name"] == MODEL and metadata["inputs"][0]["name"] == "input"
    assert fleet.api.get(f"/v2/models/{MODEL}/ready").status_code == 200
    shown = fleet.call("GET", f"/api/v1/models/{MODEL}/remote")
    assert shown["state"]["breaker"] == "closed" and TOKEN not in json.dumps(shown)
    audit = fleet.api.get("/api/v1/audit", params={"limit": 1000})
    assert "PUT /api/v1/models/{name}/remote" in audit.text and TOKEN not in audit.text

    # The remote goes away: retried within the budget, then 503; the breaker opens.
    kserve.kill()
    down, _seconds = _timed_infer(fleet)
    assert error_of(down) == (503, "upstream_unavailable"), down.text
    second, _seconds = _timed_infer(fleet)  # the breaker's second failure (or a health check's)
    assert error_of(second) in {(503, "upstream_unavailable"), (503, "circuit_open")}
    refused, seconds = _timed_infer(fleet)
    assert error_of(refused) == (503, "circuit_open"), refused.text
    assert seconds < 1.0, f"an open breaker answered after {seconds:.2f} s"
    assert "hybridai model remote show" in refused.json()["error"]
    assert fleet.call("GET", f"/api/v1/models/{MODEL}/remote")["state"]["breaker"] != "closed"
    assert fleet.api.get(f"/v2/models/{MODEL}/ready").status_code == 400
    metrics = fleet.api.get("/metrics").text
    assert f'hybridai_cloud_remote_errors_total{{kind="unreachable",model="{MODEL}"}}' in metrics
    assert "hybridai_cloud_remote_breaker_state" in metrics

    # The remote is back: the health check or a trial request closes the breaker.
    kserve.start()

    def served() -> bool:
        return infer(fleet.api).status_code == 200  # type: ignore[arg-type]

    wait_for("the remote tier serving again", served, timeout_s=20)
    assert fleet.call("GET", f"/api/v1/models/{MODEL}/remote")["state"]["breaker"] == "closed"

    # A credential the remote refuses: 502 that says so (and the remote is not blamed).
    assert _remote(fleet, **{**config, "secret": "env:WRONG_TOKEN"}).status_code == 200
    refused_auth = infer(fleet.api)
    assert error_of(refused_auth) == (502, "bad_upstream_response")
    assert "credential" in refused_auth.json()["error"]

    # A server that is no v2 server: 502 with what to check.
    assert _remote(fleet, url=odd_server, timeout_s=2).status_code == 200
    garbage = infer(fleet.api)
    assert error_of(garbage) == (502, "bad_upstream_response"), garbage.text
    assert "not a v2 inference response" in garbage.json()["error"]

    # A server that hangs: 504 within the budget, not after the server's 30 s.
    slow = {"url": odd_server, "remote_model": "slow", "timeout_s": 1.5, "retries": 2}
    assert _remote(fleet, **slow).status_code == 200
    hung, seconds = _timed_infer(fleet)
    assert error_of(hung) == (504, "upstream_timeout"), hung.text
    assert seconds < 4.0, f"a 1.5 s budget answered after {seconds:.2f} s"

    # Unset: the cloud's own runtime serves again.
    removed = _cli(fleet, "model", "remote", "unset", MODEL)
    assert removed.exit_code == 0 and "own runtime" in removed.output, removed.output
    again = assert_probabilities(infer(fleet.api))
    assert "tier" not in again
    gone = fleet.api.get(f"/api/v1/models/{MODEL}/remote")
    assert error_of(gone) == (404, "not_found")
