"""Execution providers end to end: what a deployment asks for, and what a running server reports.

This machine has no GPU, so a model that asks for CUDA runs on the CPU: the edge process (an
offline bundle, no cloud) and the cloud say so in their v2 metadata, status and metrics, and
log why. A bad runtime option is refused when the model is deployed, with what to fix.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from _models import train_classifier_onnx
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.models import registry
from hybridai.cloud.settings import CloudSettings
from hybridai.demo.lone_edge import LoneEdge
from hybridai.link.signing import public_key_text, sign_artifact
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.placement import PlacementPolicy

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
MODEL = train_classifier_onnx(seed=0)
ASKS_FOR_CUDA = {
    "runtime": {
        "execution_providers": [CUDA, CPU],
        "provider_options": {CUDA: {"device_id": 0}},
        "intra_op_threads": 2,
    }
}
ROW = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0, 1, 2, 3]}]}


def _bundle(path: Path, policy: dict[str, Any]) -> Path:
    """What `hybridai model bundle` writes: a signed artifact and a desired-state fragment."""
    key = Ed25519PrivateKey.generate()
    digest = hashlib.sha256(MODEL).hexdigest()
    assignment = ModelAssignment(
        name="pm",
        version="1",
        variant="edge",
        sha256=digest,
        size=len(MODEL),
        artifact_path="/api/v1/models/pm/versions/1/artifacts/edge",
        signature=sign_artifact(key, "pm", "1", "edge", digest),
        policy=PlacementPolicy.model_validate(policy),
    )
    desired = DesiredState(
        device_id="*",
        generation="bundle-providers",
        models=[assignment],
        signing_public_key=public_key_text(key),
    )
    manifest = {
        "format": "hybridai-bundle/1",
        "name": "pm",
        "version": "1",
        "created_at": time.time(),
        "artifacts": {"edge": {"file": "artifacts/edge.onnx", "sha256": digest}},
        "desired": desired.model_dump(mode="json"),
    }
    with tarfile.open(path, "w") as archive:
        for name, data in (
            ("manifest.json", json.dumps(manifest).encode()),
            ("artifacts/edge.onnx", MODEL),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _info_line(metrics: str, prefix: str) -> str:
    (line,) = [m for m in metrics.splitlines() if m.startswith(f"{prefix}_model_info{{")]
    return line


@pytest.mark.slow
def test_a_running_edge_reports_the_provider_it_fell_back_to(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path / "pm.tar", ASKS_FOR_CUDA)
    env = {
        "HYBRIDAI_EDGE_BUNDLE_FILE": str(bundle),
        "HYBRIDAI_EDGE_EXECUTION_PROVIDERS": json.dumps(["OpenVINOExecutionProvider", CPU]),
    }
    with LoneEdge(tmp_path / "lone", env) as edge:
        (model,) = edge.status()["models"]
        assert (model["name"], model["state"], model["provider"]) == ("pm", "ready", CPU)

        metadata = httpx.get(f"{edge.url}/v2/models/pm", timeout=10)
        assert metadata.status_code == 200, metadata.text
        assert metadata.json()["parameters"] == {"provider": CPU}

        served = httpx.post(f"{edge.url}/v2/models/pm/infer", json=ROW, timeout=10)
        assert served.status_code == 200, served.text

        metrics = httpx.get(f"{edge.url}/metrics", timeout=10)
        assert metrics.status_code == 200, metrics.text
        assert _info_line(metrics.text, "hybridai_edge") == (
            f'hybridai_edge_model_info{{model="pm",provider="{CPU}",version="1"}} 1.0'
        )
        assert edge.child is not None
        log = edge.child.log.read_text()
        assert (
            "model 'pm' version 1 asks for CUDAExecutionProvider, which this machine's "
            "onnxruntime does not offer"
        ) in log
        # The edge's own order is a preference over hardware it may lack: not news.
        assert "asks for OpenVINOExecutionProvider" not in log


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    settings = CloudSettings(
        data_dir=tmp_path / "cloud", rollout_tick_s=3600, retraining_tick_s=3600
    )
    opened = open_cloud(settings)
    with opened.session() as session:
        registry.register_version(
            session, opened.blobs, "pm", {"cloud": MODEL}, {}, {}, "t", time.time(),
            signing_key=opened.signing_key,
        )  # fmt: skip
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud) -> Iterator[TestClient]:
    token = cloud.settings.admin_token_path.read_text().strip()
    with TestClient(create_app(cloud), headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


def test_the_cloud_runs_a_deployment_where_its_runtime_asks_and_says_where(
    api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"name": "pm", "version": "1", "policy": ASKS_FOR_CUDA}
    deployed = api.put("/api/v1/deployments/pm", json=body)
    assert deployed.status_code == 200, deployed.text
    assert deployed.json()["policy"]["runtime"]["execution_providers"] == [CUDA, CPU]

    with caplog.at_level(logging.WARNING, logger="hybridai.serving.providers"):
        metadata = api.get("/v2/models/pm")
    assert metadata.status_code == 200, metadata.text
    assert metadata.json()["parameters"] == {"provider": CPU}
    assert "model 'pm' version 1 asks for CUDAExecutionProvider" in caplog.text

    served = api.post("/v2/models/pm/infer", json=ROW)
    assert served.status_code == 200, served.text
    metrics = api.get("/metrics")
    assert metrics.status_code == 200, metrics.text
    assert _info_line(metrics.text, "hybridai_cloud") == (
        f'hybridai_cloud_model_info{{model="pm",provider="{CPU}",version="1"}} 1.0'
    )


def test_a_redeploy_with_new_runtime_options_reloads_the_cloud_version(api: TestClient) -> None:
    if "AzureExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no second provider to move the model to")
    body = {"name": "pm", "version": "1", "policy": ASKS_FOR_CUDA}
    assert api.put("/api/v1/deployments/pm", json=body).status_code == 200
    assert api.post("/v2/models/pm/infer", json=ROW).status_code == 200
    assert api.get("/v2/models/pm").json()["parameters"] == {"provider": CPU}

    azure = {"runtime": {"execution_providers": ["AzureExecutionProvider", CPU]}}
    body = {"name": "pm", "version": "1", "policy": azure}
    assert api.put("/api/v1/deployments/pm", json=body).status_code == 200
    time.sleep(1.1)  # the cloud looks at a model's deployment at most once a second
    assert api.post("/v2/models/pm/infer", json=ROW).status_code == 200
    metadata = api.get("/v2/models/pm").json()
    assert metadata["parameters"] == {"provider": "AzureExecutionProvider"}
    info = _info_line(api.get("/metrics").text, "hybridai_cloud")
    assert 'provider="AzureExecutionProvider"' in info


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        (
            {"execution_providers": ["CUDAExecutionProvidr"]},
            "unknown ONNX Runtime execution provider 'CUDAExecutionProvidr'",
        ),
        ({"intra_op_threads": 0}, "intra_op_threads: Input should be greater than or equal to 1"),
        ({"threads": 4}, "policy.runtime.threads: Extra inputs are not permitted"),
        (
            {"execution_providers": [CPU], "provider_options": {CUDA: {"device_id": 0}}},
            "provider_options names CUDAExecutionProvider, which execution_providers does not list",
        ),
    ],
)
def test_a_bad_runtime_option_is_refused_at_deploy_time(
    api: TestClient, runtime: dict[str, Any], message: str
) -> None:
    body = {"name": "pm", "version": "1", "policy": {"runtime": runtime}}
    refused = api.put("/api/v1/deployments/pm", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "bad_request"
    assert message in refused.json()["error"]
    assert api.get("/api/v1/deployments").json() == []  # nothing deployed


def test_the_cli_sends_runtime_options_and_refuses_bad_json() -> None:
    result = CliRunner().invoke(cli, ["model", "deploy", "pm", "1", "--runtime", "{threads"])
    assert result.exit_code != 0
    assert "--runtime is not valid JSON" in result.output
