"""The rollout driver and registry stages as services, on every metadata backend.

Devices are enrolled for real and "report" through ``fleet.record_status`` (what the status
route calls); what each device should run is read back through ``desired_state.desired_state``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from hybridai.cloud.devices import fleet
from hybridai.cloud.devices.certificates import DeviceAuthority
from hybridai.cloud.devices.desired_state import desired_state
from hybridai.cloud.models import registry, rollout, stages
from hybridai.link import pki
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.fleet import (
    Capabilities,
    EnrollRequest,
    LoadedModel,
    ModelHealth,
    StatusReport,
)
from hybridai.protocol.rollout import RolloutRequest, RolloutTarget
from hybridai.protocol.stages import StageChange
from hybridai.storage.blobs import LocalBlobStore

NOW = 1_733_000_000.0
_CA, _CA_KEY = pki.create_ca(NOW)
AUTHORITY = DeviceAuthority(_CA, _CA_KEY, lifetime_s=3600)
DEVICES = ("d1", "d2", "d3")


@pytest.fixture
def fleet_db(db: Session, tmp_path: Path, classifier_onnx: bytes) -> Session:
    """Three devices on two sites, model pm v1 deployed, v2 and v3 registered."""
    for device, site in zip(DEVICES, ("north", "north", "south"), strict=True):
        _enroll(db, device, site)
    blobs = LocalBlobStore(tmp_path / "blobs")
    for i in range(3):
        metrics = {"edge": {"accuracy": 0.8 + i / 100}}
        registry.register_version(
            db, blobs, "pm", {"edge": classifier_onnx}, metrics, {"rows": 100 * (i + 1)}, "t", NOW
        )
    registry.set_deployment(db, "pm", "1", "t", NOW)
    return db


def _enroll(db: Session, device: str, site: str) -> None:
    token = fleet.create_enrollment_token(db, site, device, 600, NOW)
    request = EnrollRequest(
        token=token.token,
        device_id=device,
        kind="edge-server",
        capabilities=Capabilities(cores=2, memory_mb=2048),
        agent_version="t",
        csr=pki.device_csr(pki.new_key(), device),
    )
    fleet.enroll(db, request, NOW, AUTHORITY)


def _runs(db: Session, device: str) -> str:
    return desired_state(db, device, {}).models[0].version


def _report(
    db: Session,
    device: str,
    version: str,
    at: float,
    failed: str | None = None,
    requests: int = 20,
) -> None:
    loaded = LoadedModel(
        name="pm", version=version, variant="edge", state="ready", failed_version=failed
    )
    health = [ModelHealth(name="pm", version=version, requests=requests)]
    report = StatusReport(
        device_id=device, agent_version="t", uptime_s=1, models=[loaded], model_health=health
    )
    fleet.record_status(db, report, at)
    db.commit()


def _request(**kw: object) -> RolloutRequest:
    base: dict[str, object] = {
        "model": "pm",
        "version": "2",
        "canary_share": 0.34,
        "step_share": 0.33,
        "soak_s": 0,
        "device_timeout_s": 30,
    }
    return RolloutRequest.model_validate({**base, **kw})


def test_a_rollout_pins_waves_and_a_success_becomes_the_deployment(fleet_db: Session) -> None:
    db = fleet_db
    started = rollout.start(db, _request(), "op", NOW + 1)
    assert (started.status, started.updated) == ("running", ["d1"])
    assert [_runs(db, d) for d in DEVICES] == ["2", "1", "1"]
    _report(db, "d1", "2", NOW + 2)
    rollout.tick(db, NOW + 2)
    assert [_runs(db, d) for d in DEVICES] == ["2", "2", "1"]
    t = NOW + 3
    for _ in range(5):
        for d in DEVICES:
            _report(db, d, _runs(db, d), t)
        rollout.tick(db, t)
        t += 1
    done = rollout.get(db, started.rollout_id)
    assert done.status == "succeeded" and done.step == 3
    assert registry.get_deployments(db)[0].version == "2"
    assert registry.get_version(db, "pm", "1").stage == "archived"
    assert [_runs(db, d) for d in DEVICES] == ["2", "2", "2"]


def test_a_refused_version_aborts_rolls_back_and_does_not_block_the_next(
    fleet_db: Session,
) -> None:
    db = fleet_db
    first = rollout.start(db, _request(version="3"), "op", NOW + 1)
    with pytest.raises(ApiError) as busy:
        rollout.start(db, _request(), "op", NOW + 1)
    assert busy.value.code == ErrorCode.CONFLICT and first.rollout_id in busy.value.message
    _report(db, "d1", "1", NOW + 2, failed="3")
    aborted = rollout.tick(db, NOW + 2)[0]
    assert aborted.status == "aborted" and "d1: could not load v3" in aborted.reason
    assert [_runs(db, d) for d in DEVICES] == ["1", "1", "1"]
    second = rollout.start(db, _request(target=RolloutTarget(sites=["south"])), "op", NOW + 3)
    assert second.devices == ["d3"] and [_runs(db, d) for d in DEVICES] == ["1", "1", "2"]
    _report(db, "d3", "2", NOW + 4)
    assert rollout.tick(db, NOW + 4)[0].status == "succeeded"
    # the finished rollout is the deployment now; the devices outside its target keep v1
    assert registry.get_deployments(db)[0].version == "2"
    assert [_runs(db, d) for d in DEVICES] == ["1", "1", "2"]


@pytest.mark.parametrize(
    "target",
    [RolloutTarget(sites=["south"]), RolloutTarget(devices=list(DEVICES))],
    ids=["a-site", "every-device-by-name"],
)
def test_a_finished_rollout_of_any_target_is_what_new_devices_get_and_the_next_starts_from(
    fleet_db: Session, target: RolloutTarget
) -> None:
    db = fleet_db
    done = rollout.start(db, _request(target=target, canary_share=1.0), "op", NOW + 1)
    for device in done.devices:
        _report(db, device, "2", NOW + 2)
    assert rollout.tick(db, NOW + 2)[0].status == "succeeded"

    models = registry.list_models(db)[0]
    assert models.deployed_version == "2" and models.stages["2"] == "production"
    assert models.stages["1"] == "archived"
    _enroll(db, "late", "north")
    assert _runs(db, "late") == "2"  # enrolled after the rollout: the new version
    outside = [d for d in DEVICES if d not in done.devices]
    assert [_runs(db, d) for d in outside] == ["1"] * len(outside)  # untouched: unchanged

    following = rollout.start(db, _request(version="3"), "op", NOW + 3)
    assert (following.from_version, following.to_version) == ("2", "3")


def test_silent_devices_time_out_and_pause_resume_abort(fleet_db: Session) -> None:
    db = fleet_db
    r = rollout.start(db, _request(device_timeout_s=5), "op", NOW)
    paused = rollout.control(db, r.rollout_id, "pause", "op", NOW + 1)
    assert paused.status == "paused" and paused.updated == ["d1"]
    with pytest.raises(ApiError) as wrong:
        rollout.control(db, r.rollout_id, "pause", "op", NOW + 1)
    assert wrong.value.status == 409
    resumed = rollout.control(db, r.rollout_id, "resume", "op", NOW + 2)
    assert resumed.status == "running"
    assert rollout.tick(db, NOW + 6)[0].status == "running"  # 4 s since the resume
    timed_out = rollout.tick(db, NOW + 8)[0]
    assert timed_out.status == "aborted" and "within 5s" in timed_out.reason
    with pytest.raises(ApiError):
        rollout.control(db, r.rollout_id, "abort", "op", NOW + 9)
    r2 = rollout.start(db, _request(), "op", NOW + 10)
    assert rollout.control(db, r2.rollout_id, "abort", "op", NOW + 11).status == "aborted"
    assert [_runs(db, d) for d in DEVICES] == ["1", "1", "1"]


def test_an_idle_canary_waits_for_traffic_and_is_held_not_promoted(fleet_db: Session) -> None:
    db = fleet_db
    r = rollout.start(db, _request(traffic_timeout_s=60), "op", NOW)
    _report(db, "d1", "2", NOW + 1, requests=3)

    waiting = rollout.tick(db, NOW + 1)[0]
    assert (waiting.status, waiting.step) == ("running", 1)
    assert waiting.reason == "waiting for traffic: d1 3/20 requests"
    assert waiting.verdicts[0].reason == "waiting for traffic: 3/20 requests"

    _report(db, "d1", "2", NOW + 61, requests=3)
    held = rollout.tick(db, NOW + 61)[0]
    assert (held.status, held.updated) == ("paused", ["d1"])
    assert held.reason.startswith("held: too little traffic within 60s (d1 3/20 requests)")
    assert registry.get_deployments(db)[0].version == "1"  # never promoted
    assert [_runs(db, d) for d in DEVICES] == ["2", "1", "1"]

    resumed = rollout.control(db, r.rollout_id, "resume", "op", NOW + 62)
    assert resumed.status == "running"
    _report(db, "d1", "2", NOW + 63, requests=20)
    assert rollout.tick(db, NOW + 63)[0].step == 2  # enough traffic now: it grows


def test_allow_idle_accepts_canaries_without_traffic(fleet_db: Session) -> None:
    db = fleet_db
    request = _request(canary_share=1.0, gates={"allow_idle": True})
    r = rollout.start(db, request, "op", NOW)
    assert r.request.gates.allow_idle
    for device in DEVICES:
        _report(db, device, "2", NOW + 1, requests=0)
    assert rollout.tick(db, NOW + 1)[0].status == "succeeded"


def test_bad_requests_are_clear(fleet_db: Session) -> None:
    db = fleet_db
    cases = [
        (_request(version="9"), ErrorCode.VERSION_NOT_FOUND),
        (_request(version="1"), ErrorCode.INVALID_INPUT),
        (_request(target=RolloutTarget(devices=["ghost"])), ErrorCode.UNKNOWN_DEVICE),
        (_request(target=RolloutTarget(sites=["nowhere"])), ErrorCode.INVALID_INPUT),
    ]
    for request, code in cases:
        with pytest.raises(ApiError) as caught:
            rollout.start(db, request, "op", NOW)
        assert caught.value.code == code, caught.value.message
    with pytest.raises(ApiError) as missing:
        rollout.get(db, "nope")
    assert missing.value.status == 404


def test_stages_promote_archive_and_compare(fleet_db: Session) -> None:
    db = fleet_db
    assert registry.get_version(db, "pm", "2").stage == "candidate"
    assert stages.change_stage(db, "pm", "2", StageChange(stage="staged"), "ds", NOW) == "staged"
    with pytest.raises(ApiError) as deployed:
        stages.change_stage(db, "pm", "1", StageChange(stage="archived"), "op", NOW)
    assert deployed.value.status == 409 and "fleet runs" in deployed.value.message
    stages.change_stage(db, "pm", "2", StageChange(stage="production"), "op", NOW)
    assert registry.get_deployments(db)[0].version == "2"
    assert registry.list_models(db)[0].stages == {
        "1": "archived",
        "2": "production",
        "3": "candidate",
    }
    assert (
        stages.change_stage(db, "pm", "3", StageChange(stage="archived"), "op", NOW) == "archived"
    )

    diff = stages.compare(db, "pm", "1", "3")
    metric = {m.key: m for m in diff.metrics}["edge.accuracy"]
    assert (metric.a, metric.b, metric.delta) == pytest.approx((0.8, 0.82, 0.02))
    assert diff.sizes["edge"]["a"] == diff.sizes["edge"]["b"] > 0
    assert [(m.key, m.a, m.b) for m in diff.lineage] == [("rows", 100, 300)]
    assert diff.stages == {"1": "archived", "3": "archived"}
