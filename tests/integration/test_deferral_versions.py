"""A trained version's learned deferral: fitted on validation, stored, signed, shipped to edges."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from test_calibration import NOW, fill
from typer.testing import CliRunner

from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.app import create_app
from hybridai.cloud.context import open_cloud
from hybridai.cloud.data.lake import Lake
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines import deferral_versions
from hybridai.cloud.pipelines.training import train
from hybridai.cloud.settings import CloudSettings
from hybridai.demo.simulator import pm_training_spec
from hybridai.link.signing import public_key_text, verify_artifact
from hybridai.protocol.deferral import ROUTER_VARIANT, DeferralMethod, DeferralRequest
from hybridai.protocol.errors import ApiError
from hybridai.protocol.placement import PlacementPolicy
from hybridai.storage.blobs import LocalBlobStore

KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def trained(tmp_path: Path, db: Session) -> tuple[Lake, LocalBlobStore, str]:
    lake = Lake(str(tmp_path / "lake"))
    fill(lake, 450)
    result = train(lake, pm_training_spec(seed=0))
    blobs = LocalBlobStore(tmp_path / "blobs")
    info = registry.register_version(
        db, blobs, "pm", result.artifacts, result.metrics, result.lineage, "alice", NOW, KEY
    )
    return lake, blobs, info.version


def test_a_version_ships_the_method_with_the_higher_validation_apgr_and_a_signed_router(
    trained: tuple[Lake, LocalBlobStore, str], db: Session
) -> None:
    lake, blobs, version = trained
    request = DeferralRequest(target_cloud_share=0.2)
    report = deferral_versions.fit_version(db, blobs, lake, "pm", version, request, KEY, NOW)
    val, test = report.validation, report.test
    assert "fitted here" in val.role and "held out" in test.role
    assert val.rows > 0 and test.rows > 0
    assert (
        set(val.methods) == set(test.methods) == {DeferralMethod.THRESHOLD, DeferralMethod.ROUTER}
    )
    apgr = {m: f.apgr for m, f in val.methods.items()}
    router_wins = (apgr[DeferralMethod.ROUTER] or 0) > (apgr[DeferralMethod.THRESHOLD] or 0)
    assert report.method is (DeferralMethod.ROUTER if router_wins else DeferralMethod.THRESHOLD)
    assert report.chosen_by == "validation APGR"
    # The router's scores are fine-grained: calibrated to the target on validation. (The edge
    # variant, a depth-4 tree, has a few tied confidences: its threshold takes the nearest.)
    assert abs(val.methods[DeferralMethod.ROUTER].cloud_share - 0.2) < 0.02

    policy = PlacementPolicy.model_validate({"kind": "cascade", "cascade": {"threshold": 0.5}})
    registry.set_deployment(db, "pm", version, "a", NOW, policy)
    (assignment,) = desired_state(db, "gw-1", {}).models
    assert assignment.deferral is not None and assignment.deferral.method is report.method
    router = assignment.deferral.router
    assert router is not None and router.threshold == val.methods[DeferralMethod.ROUTER].threshold
    onnx = base64.b64decode(router.onnx)
    assert hashlib.sha256(onnx).hexdigest() == router.sha256 and len(onnx) == report.router_bytes
    verify_artifact(
        public_key_text(KEY), router.signature, "pm", version, ROUTER_VARIANT, router.sha256
    )

    named = DeferralRequest(target_cloud_share=0.2, method="threshold")
    again = deferral_versions.fit_version(db, blobs, lake, "pm", version, named, KEY, NOW)
    assert again.method is DeferralMethod.THRESHOLD and again.chosen_by == "named"
    (assignment,) = desired_state(db, "gw-1", {}).models
    assert assignment.deferral is not None
    assert assignment.deferral.method is DeferralMethod.THRESHOLD


def test_deferral_refuses_two_targets_and_a_version_without_both_variants(
    trained: tuple[Lake, LocalBlobStore, str], db: Session
) -> None:
    lake, blobs, version = trained
    both = DeferralRequest(target_cloud_share=0.2, target_accuracy=0.9)
    with pytest.raises(ApiError, match="exactly one"):
        deferral_versions.fit_version(db, blobs, lake, "pm", version, both, KEY)
    artifacts = {"edge": blobs.get(registry.blob_key("pm", version, "edge"))}
    edge_only = registry.register_version(db, blobs, "pm", artifacts, {}, {}, "bob", NOW)
    with pytest.raises(ApiError, match="both an edge and a cloud variant") as error:
        deferral_versions.fit_version(
            db, blobs, lake, "pm", edge_only.version, DeferralRequest(target_cloud_share=0.2), KEY
        )
    assert error.value.status == 400


def test_cli_defer_labels_validation_and_test_and_the_api_keeps_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = open_cloud(CloudSettings(data_dir=tmp_path / "cloud", rollout_tick_s=3600))
    try:
        fill(cloud.lake, 450)
        result = train(cloud.lake, pm_training_spec(seed=0))
        with cloud.session() as session:
            info = registry.register_version(
                session,
                cloud.blobs,
                "pm",
                result.artifacts,
                result.metrics,
                result.lineage,
                "a",
                NOW,
                cloud.signing_key,
            )
        with TestClient(create_app(cloud)) as api:

            @contextlib.contextmanager
            def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[Any]:
                api.headers.clear()
                if token:
                    api.headers["Authorization"] = f"Bearer {token}"
                yield api

            monkeypatch.setattr(_api, "client", in_process)
            token = cloud.settings.admin_token_path.read_text().strip()
            monkeypatch.setenv("HYBRIDAI_TOKEN", token)
            monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
            monkeypatch.setenv("COLUMNS", "200")
            path = f"/api/v1/models/pm/versions/{info.version}/deferral"
            headers = {"Authorization": f"Bearer {token}"}
            missing = api.get(path, headers=headers)
            args = [
                "model",
                "defer",
                "pm",
                "--version",
                info.version,
                "--target-cloud-share",
                "0.3",
            ]
            shown = CliRunner().invoke(cli, args)
            as_json = CliRunner().invoke(cli, [*args, "--json"])
            bad = CliRunner().invoke(cli, [*args, "--method", "oracle"])
            kept = api.get(path, headers=headers)
            wrong = api.post(path, headers=headers, json={"target_cloud_share": 2})
    finally:
        cloud.close()
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert "model defer" in missing.json()["error"]
    assert shown.exit_code == 0, shown.output
    assert "VALIDATION split" in shown.output and "TEST split" in shown.output
    assert "(ships)" in shown.output
    report = json.loads(as_json.output)
    assert set(report["validation"]["methods"]) == {"threshold", "router"}
    assert kept.status_code == 200 and kept.json()["method"] == report["method"]
    assert bad.exit_code != 0 and "auto, threshold or router" in bad.output
    assert wrong.status_code in (400, 422)
