"""``hybridai model bundle``: the CLI writes a bundle an edge can start from, or says why not.

The CLI talks to the in-process cloud app (only the HTTP transport is swapped); what it wrote
is read back with the edge's own reader, which checks every artifact against the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hybridai.cli import model_lifecycle
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.models import registry
from hybridai.cloud.settings import CloudSettings
from hybridai.edge.models.bundle import read_bundle
from hybridai.link.signing import public_key_text, verify_artifact


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Cloud]:
    settings = CloudSettings(data_dir=tmp_path / "cloud", rollout_tick_s=3600)
    opened = open_cloud(settings)
    yield opened
    opened.close()


@pytest.fixture
def runner(cloud: Cloud, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    with TestClient(create_app(cloud)) as api:

        @contextlib.contextmanager
        def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[Any]:
            api.headers.clear()
            if token:
                api.headers["Authorization"] = f"Bearer {token}"
            yield api

        monkeypatch.setattr(model_lifecycle, "client", in_process)
        monkeypatch.setenv("HYBRIDAI_TOKEN", cloud.settings.admin_token_path.read_text().strip())
        monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
        monkeypatch.chdir(tmp_path)
        yield CliRunner()


def _register(cloud: Cloud, data: bytes, *, signed: bool = True) -> str:
    with cloud.session() as session:
        info = registry.register_version(
            session,
            cloud.blobs,
            "pm",
            {"edge": data, "cloud": data},
            {},
            {"reference": {"features": {}}},
            "t",
            time.time(),
            signing_key=cloud.signing_key if signed else None,
        )
        registry.set_deployment(session, "pm", info.version, "t", time.time())
    return info.version


def test_bundle_writes_what_an_edge_starts_from(
    runner: CliRunner, cloud: Cloud, classifier_onnx: bytes, tmp_path: Path
) -> None:
    version = _register(cloud, classifier_onnx)
    target = tmp_path / "out" / "pm.tar"
    target.parent.mkdir()

    result = runner.invoke(cli, ["model", "bundle", "pm", version, "-o", str(target)])

    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # Rich wraps long lines
    assert said.startswith("wrote") and said.endswith(f"): pm v{version}"), said
    desired, artifacts = read_bundle(target)
    [assignment] = desired.models
    digest = hashlib.sha256(classifier_onnx).hexdigest()
    assert (assignment.name, assignment.version, assignment.variant) == ("pm", version, "edge")
    assert assignment.sha256 == digest and artifacts[digest] == classifier_onnx
    assert cloud.signing_key is not None
    assert desired.signing_public_key == public_key_text(cloud.signing_key)
    verify_artifact(  # raises if the bundled signature does not hold
        desired.signing_public_key, assignment.signature, "pm", version, "edge", digest
    )
    assert assignment.reference == {"features": {}}


def test_bundle_failures_say_why_and_write_nothing(
    runner: CliRunner, cloud: Cloud, classifier_onnx: bytes, tmp_path: Path
) -> None:
    unsigned = _register(cloud, classifier_onnx, signed=False)
    target = tmp_path / "bundle.tar"

    missing = runner.invoke(cli, ["model", "bundle", "pm", "9", "-o", str(target)])
    assert missing.exit_code == 1 and "HTTP 404" in missing.output, missing.output
    refused = runner.invoke(cli, ["model", "bundle", "pm", unsigned, "-o", str(target)])
    assert refused.exit_code == 1 and "HTTP 409" in refused.output
    assert "no signed artifact to bundle" in refused.output
    assert not target.exists()


def test_bundle_without_a_cloud_says_it_cannot_reach_it(tmp_path: Path) -> None:
    target = tmp_path / "bundle.tar"
    result = CliRunner().invoke(
        cli,
        ["model", "bundle", "pm", "1", "-o", str(target), "--cloud", "http://127.0.0.1:9"],
        env={"HYBRIDAI_TOKEN": "hai_api_x", "HYBRIDAI_CONFIG_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1 and "cannot reach the cloud at http://127.0.0.1:9" in result.output
    assert not target.exists()
