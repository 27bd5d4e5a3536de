"""Data policies, signed models and the compliance report through real processes.

One cloud and one edge as separate processes over the real wire: restricted data must not
reach the cloud (we scan every file the cloud wrote), personal data arrives pseudonymised,
restricted inference stays at the edge, and a model whose blob and metadata an attacker
rewrote (without the signing key) is refused by the edge while the old version keeps serving.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _fleet import MODEL, infer, ingest, local_fleet, upload_and_deploy
from _models import train_classifier_onnx
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow

SECRET_FIELD = "RECIPE-SECRET-7d41c2"
SECRET_STREAM = "FORMULA-SECRET-55ab09"
PERSON = "operator-alice-3e9f"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet") as f:
        f.start_edge("edge-a", "site-north")
        f.wait_enrolled(1)
        yield f


def _files_containing(fleet: LocalFleet, needles: list[bytes]) -> list[str]:
    """Every file the cloud wrote (lake with its Delta log, metadata, blobs) and its log."""
    found = []
    paths = [*(fleet.workspace / "cloud").rglob("*"), *fleet.workspace.glob("cloud*.log")]
    for path in paths:
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {n!r}" for n in needles if n in data]
    return found


def test_restricted_data_never_reaches_the_cloud(fleet: LocalFleet) -> None:
    fleet.call(
        "PUT",
        "/api/v1/policies/telemetry",
        json={"fields": {"operator": "personal", "recipe": "restricted"}},
    )
    fleet.call("PUT", "/api/v1/policies/formulas", json={"classification": "restricted"})
    wait_for(
        "the edge to apply both policies",
        lambda: fleet.edge_status("edge-a")["policies"] == ["formulas", "telemetry"],
        30,
    )
    edge = fleet.edges["edge-a"].url
    now = 1_750_000_000.0
    telemetry = [
        {"ts": now + i, "operator": PERSON, "recipe": SECRET_FIELD, "vibration": 1.0 + i}
        for i in range(5)
    ]
    assert ingest(edge, "telemetry", telemetry).status_code == 200
    formulas = [{"ts": now + i, "formula": SECRET_STREAM} for i in range(3)]
    assert ingest(edge, "formulas", formulas).status_code == 200

    wait_for(
        "telemetry in the lake", lambda: fleet.lake_count("SELECT count(*) FROM telemetry") == 5, 60
    )
    store = fleet.edge_status("edge-a")["store"]
    assert store["local_only_records"] == 3 and store["backlog_records"] == 0

    rows = fleet.call("POST", "/api/v1/lake/query", json={"sql": "SELECT * FROM telemetry"})
    assert "recipe" not in rows["columns"]
    operators = {r[rows["columns"].index("operator")] for r in rows["rows"]}
    assert len(operators) == 1 and next(iter(operators)).startswith("ps:")
    assert "formulas" not in fleet.call("GET", "/api/v1/lake/tables")
    needles = [SECRET_FIELD.encode(), SECRET_STREAM.encode(), PERSON.encode()]
    assert _files_containing(fleet, needles) == []


def test_restricted_inference_is_answered_at_the_edge_or_refused(fleet: LocalFleet) -> None:
    version = upload_and_deploy(fleet, train_classifier_onnx())
    wait_for("the edge to serve the model", lambda: fleet.serving(MODEL, version), 60)
    edge = fleet.edges["edge-a"].url
    before = fleet.edge_status("edge-a")["inference"]["requests_cloud"]

    local = infer(edge, {"data_class": "restricted", "placement": "cloud"})
    assert local.status_code == 200, local.text
    assert local.json()["parameters"]["placement"] == "edge"

    missing = infer(edge, {"data_class": "restricted"}, path="/v2/models/ghost")
    assert missing.status_code == 503
    assert "restricted" in missing.json()["error"]
    assert fleet.edge_status("edge-a")["inference"]["requests_cloud"] == before


def test_a_forged_model_is_refused_and_the_old_one_serves_on(fleet: LocalFleet) -> None:
    v1 = upload_and_deploy(fleet, train_classifier_onnx(seed=0))
    wait_for("v1 at the edge", lambda: fleet.serving(MODEL, v1), 60)
    onnx = train_classifier_onnx(seed=1)
    info = fleet.call(
        "POST", f"/api/v1/models/{MODEL}/versions", files={"edge": ("edge.onnx", onnx)}
    )
    v2 = str(info["version"])
    assert info["artifacts"][0]["signature"]
    # An attacker with write access to the blobs and the metadata, but not to the signing
    # key, swaps v2's bytes and fixes the recorded digest to match.
    forged = train_classifier_onnx(seed=2)
    cloud_dir = fleet.workspace / "cloud"
    (cloud_dir / "blobs" / "models" / MODEL / v2 / "edge.onnx").write_bytes(forged)
    with sqlite3.connect(cloud_dir / "metadata.db") as db:
        db.execute(
            "UPDATE model_artifacts SET sha256 = ?, size = ? WHERE name = ? AND version = ?",
            (hashlib.sha256(forged).hexdigest(), len(forged), MODEL, int(v2)),
        )
    fleet.call("PUT", f"/api/v1/deployments/{MODEL}", json={"name": MODEL, "version": v2})

    def refused() -> bool:
        models = {m["name"]: m for m in fleet.edge_status("edge-a")["models"]}
        error = models[MODEL].get("error") or ""
        return f"v{v2} refused" in error and "signature" in error

    wait_for("the edge to refuse the forged v2", refused, 60)
    assert fleet.serving(MODEL, v1)
    answer = infer(fleet.edges["edge-a"].url)
    assert answer.status_code == 200 and answer.json()["model_version"] == v1

    report = fleet.call("GET", "/api/v1/compliance/report")
    controls = {c["control"]: c for c in report["controls"]}
    assert controls["models_signed"]["status"] == "fail"
    assert f"{MODEL} v{v2}" in controls["models_signed"]["detail"]


def test_compliance_report_names_every_control(fleet: LocalFleet) -> None:
    upload_and_deploy(fleet, train_classifier_onnx())
    report = fleet.call("GET", "/api/v1/compliance/report")
    controls = {c["control"]: c for c in report["controls"]}
    assert set(controls) == {
        "tls_version",
        "mfa_privileged",
        "bootstrap_token",
        "audit_chain",
        "certificates_expiry",
        "devices_seen",
        "policies_present",
        "models_signed",
    }
    assert controls["models_signed"]["status"] == "pass"
    assert controls["audit_chain"]["status"] == "pass"
    assert controls["tls_version"]["status"] == "pass", controls["tls_version"]  # TLS 1.3 only
    assert report["passed"] == all(c["status"] != "fail" for c in report["controls"])
    assert fleet.api is not None
    for stream, spec in (("Bad-Name", {}), ("x", {"fields": {"a": "secret"}})):
        bad = fleet.api.put(f"/api/v1/policies/{stream}", json=spec)
        assert bad.status_code == 400, bad.text
    missing = fleet.api.get("/api/v1/policies/nothing")
    assert missing.status_code == 404 and "hybridai policy set" in missing.json()["error"]
    anonymous = httpx.get(
        f"{fleet.api.base_url}/api/v1/compliance/report", verify=fleet.verify(), timeout=10
    )
    assert anonymous.status_code == 401
