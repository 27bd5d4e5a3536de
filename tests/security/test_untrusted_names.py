"""Names from outside never become paths or URLs unchecked (issue 11.4).

A model name travels from a request's URL into the edge's forward to the cloud or a site peer,
and from a bundle's manifest into a file name in the edge's model cache. Both doors answer a
name outside the allow-list (``protocol.names``) with a clear refusal: 400 ``invalid_name`` over
HTTP, never a 500, and a bundle that names a path is refused before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from _hostile import DEVICE

from _fleet import error_of, infer_body
from hybridai.demo.fleet import LocalFleet
from hybridai.demo.launcher import free_port

pytestmark = pytest.mark.slow

# Each as it stands in the URL: percent-encoded bytes a client may send.
BAD_NAMES = [
    pytest.param("%01pm", id="control-character"),
    pytest.param("pm%0A", id="trailing-newline"),
    pytest.param("%2e%2e", id="encoded-dot-dot"),
    pytest.param("pm%20x", id="space"),
    pytest.param("%C3%A9t%C3%A9", id="non-ascii"),
]


def _raw(client: httpx.Client, method: str, url: str, **kwargs: object) -> httpx.Response:
    """Send ``url``'s path exactly as written (httpx would otherwise normalise ``%2e%2e``)."""
    request = client.build_request(method, url, **kwargs)  # type: ignore[arg-type]
    path = url.split("://", 1)[-1]
    path = path[path.index("/") :] if "://" in url else url
    request.url = request.url.copy_with(raw_path=path.encode("ascii"))
    return client.send(request)


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize(
    "route",
    [
        pytest.param(("POST", "/v2/models/{}/infer"), id="infer"),
        pytest.param(("POST", "/v2/models/pm/versions/{}/infer"), id="version-infer"),
        pytest.param(("GET", "/v2/models/{}"), id="metadata"),
        pytest.param(("GET", "/v2/models/{}/ready"), id="ready"),
    ],
)
def test_a_bad_model_name_gets_400_at_the_edge_and_the_cloud(
    fleet: LocalFleet, name: str, route: tuple[str, str]
) -> None:
    method, template = route
    path = template.format(name)
    body = {"json": infer_body(1)} if method == "POST" else {}
    assert fleet.api is not None
    with httpx.Client(timeout=60) as plain:
        at_edge = _raw(plain, method, fleet.edges[DEVICE].url + path, **body)
    at_cloud = _raw(fleet.api, method, path, **body)
    for where, response in (("edge", at_edge), ("cloud", at_cloud)):
        assert error_of(response) == (400, "invalid_name"), f"{where}: {response.text}"
        assert "letters, digits" in response.json()["error"], response.text
    # Both still serve.
    assert httpx.get(fleet.edges[DEVICE].url + "/v2/health/live", timeout=30).status_code == 200
    assert fleet.api.get("/v2/health/live").status_code == 200


def test_an_encoded_slash_in_a_model_name_is_no_route_and_is_not_forwarded(
    fleet: LocalFleet,
) -> None:
    with httpx.Client(timeout=60) as plain:
        response = _raw(plain, "POST", fleet.edges[DEVICE].url + "/v2/models/..%2F..%2Fetc/infer")
    assert error_of(response) == (404, "not_found"), response.text


@pytest.mark.parametrize("name", ["%01pm", "pm%0A", "%2e%2e", "pm%20x"])
def test_a_bad_name_in_any_route_path_is_a_400_invalid_name(fleet: LocalFleet, name: str) -> None:
    """One allow-list for every name in a path (serving.path_names), at the cloud and the edge."""
    assert fleet.api is not None
    at_cloud = [
        ("GET", f"/api/v1/models/{name}/versions/1"),
        ("GET", f"/api/v1/models/pm/versions/{name}"),
        ("PUT", f"/api/v1/deployments/{name}"),
        ("GET", f"/api/v1/devices/{name}"),
        ("GET", f"/api/v1/streams/{name}/schema"),
    ]
    for method, path in at_cloud:
        body = {"name": "pm", "version": "1"} if method == "PUT" else None
        response = _raw(fleet.api, method, path, json=body)
        assert error_of(response) == (400, "invalid_name"), f"{method} {path}: {response.text}"
    with httpx.Client(timeout=60) as plain:
        url = f"{fleet.edges[DEVICE].url}/api/v1/streams/{name}/records"
        response = _raw(plain, "POST", url, json={"records": [{"ts": 1.0}]})
    assert error_of(response) == (400, "invalid_name"), response.text


# -- a bundle whose manifest names a path -------------------------------------------------------


def _bundle(path: Path, model_name: str) -> None:
    """A bundle as `hybridai model bundle` writes it, but for a model named ``model_name``."""
    artifact = b"not really onnx, but the digest matches"
    digest = hashlib.sha256(artifact).hexdigest()
    assignment = {
        "name": model_name,
        "version": "1",
        "variant": "edge",
        "sha256": digest,
        "size": len(artifact),
        "artifact_path": "/api/v1/artifacts/x",
        "signature": None,
    }
    manifest = {
        "format": "hybridai-bundle/1",
        "artifacts": {"edge": {"file": "artifacts/edge.onnx", "sha256": digest}},
        "desired": {"device_id": "*", "generation": "bundle-x", "models": [assignment]},
    }
    with tarfile.open(path, "w") as archive:
        for name, data in (
            ("manifest.json", json.dumps(manifest).encode()),
            ("artifacts/edge.onnx", artifact),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def run_edge_with_bundle(
    workspace: Path, bundle: Path, wait_s: float = 60
) -> tuple[subprocess.Popen[bytes], Path, bool]:
    """``hybridai edge run --bundle`` with no cloud: (process, its log, whether it served)."""
    data_dir = workspace / "site" / "device" / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workspace / "edge.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hybridai",
                "edge",
                "run",
                "--cloud",
                "https://127.0.0.1:9",
                "--device-id",
                "edge-b",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
                "--bundle",
                str(bundle),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workspace,
            # A token (never used: no cloud answers) lets a device with no certificate start.
            env={**os.environ, "HYBRIDAI_EDGE_ENROLL_TOKEN": "unused-token"},
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=1).is_success:
                return process, log, True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return process, log, False


@pytest.mark.parametrize("name", ["../../../escaped", "..", "pm/../../x", "pm\x01"])
def test_a_bundle_naming_a_path_is_refused_and_nothing_is_written_outside(
    tmp_path: Path, name: str
) -> None:
    bundle = tmp_path / "bundle.tar"
    _bundle(bundle, name)
    process, log, served = run_edge_with_bundle(tmp_path, bundle)
    try:
        if served:
            time.sleep(2)  # the bundle is applied as the server starts: give it its chance
        data_dir = tmp_path / "site" / "device" / "data"
        outside = [
            p
            for p in tmp_path.rglob("*")
            if p.is_file() and data_dir not in p.parents and p not in (bundle, log)
        ]
        assert outside == [], f"written outside the data directory: {outside}"
        assert not list(data_dir.rglob("*.onnx")), "an unverified artifact was cached"
        assert not served, "the edge started from a bundle that names a path"
        assert process.wait(timeout=60) != 0
        text = " ".join(log.read_text(errors="replace").split())  # the CLI wraps its lines
        assert "models.0.name" in text and "not a valid name" in text, text
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
