"""Self-healing over a synthetic fleet, on SQLite and PostgreSQL: alert -> rule -> action.

Devices enroll over the real routes; their reports go through ``fleet.record_status`` with a
simulated clock, and each round runs the evaluator and the healer as the cloud's loop does
(``loops._evaluate`` is ``alerts.evaluate`` then ``_heal``). What an action changes is read
back where the device would read it: its desired state (``device_desired``).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from tests._telemetry import FakeEdge
from typer.testing import CliRunner

from hybridai.cli import _api
from hybridai.cli.main import app as cli
from hybridai.cloud.api.fleet import device_desired
from hybridai.cloud.app import create_app
from hybridai.cloud.context import Cloud, open_cloud
from hybridai.cloud.devices import device_settings, fleet
from hybridai.cloud.models import registry, rollout
from hybridai.cloud.operations import alerts, healing
from hybridai.cloud.operations.loops import _heal, checks
from hybridai.cloud.settings import CloudSettings
from hybridai.link import pki
from hybridai.observability.alerting import Event
from hybridai.observability.healing import HealingRulesError, load_rules, parse
from hybridai.protocol.alerts import Alert, HealingAction
from hybridai.protocol.edge_settings import EdgeConfig
from hybridai.protocol.fleet import Capabilities, EnrollRequest
from hybridai.protocol.rollout import RolloutRequest
from hybridai.storage.tables import AuditEntryRow

HEARTBEAT = 5.0
T0 = float(int(time.time()))
DEVICES = ("gw-1", "gw-2", "gw-3")


def _settings(tmp_path: Path, metadata_url: str, **extra: object) -> CloudSettings:
    return CloudSettings(
        data_dir=tmp_path / "cloud",
        database_url=metadata_url,
        rollout_tick_s=3600,
        retraining_tick_s=3600,
        alert_eval_s=3600,
        telemetry_compact_s=3600,
        heartbeat_interval_s=HEARTBEAT,
        alert_sync_stalled_s=600.0,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def cloud(metadata_url: str, tmp_path: Path) -> Iterator[Cloud]:
    opened = open_cloud(_settings(tmp_path, metadata_url))
    yield opened
    opened.close()


@pytest.fixture
def api(cloud: Cloud, classifier_onnx: bytes) -> Iterator[TestClient]:
    admin = cloud.settings.admin_token_path.read_text().strip()
    with TestClient(create_app(cloud), headers={"Authorization": f"Bearer {admin}"}) as client:
        for device in DEVICES:
            token = client.post(
                "/api/v1/enrollment-tokens", json={"site": "north", "device_id": device}
            )
            body = {
                "token": token.json()["token"],
                "device_id": device,
                "kind": "edge-server",
                "capabilities": {"cores": 4, "memory_mb": 2048},
                "agent_version": "t",
                "csr": pki.device_csr(pki.new_key(), device),
            }
            assert client.post("/api/v1/enroll", json=body).status_code == 200
        with cloud.session() as session:
            for _ in range(2):
                registry.register_version(
                    session, cloud.blobs, "pm", {"edge": classifier_onnx}, {}, {}, "t", T0
                )
            registry.set_deployment(session, "pm", "1", "t", T0)
        yield client


class Fleet:
    """The synthetic fleet: one ``tick`` is one heartbeat of every device, then the healer."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud
        self.edges = {d: FakeEdge(d, seed=i) for i, d in enumerate(DEVICES)}
        self.now = T0
        self.events: list[tuple[Alert, Event]] = []

    def tick(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.now += HEARTBEAT
            with self.cloud.session() as session:
                for edge in self.edges.values():
                    fleet.record_status(session, edge.report(HEARTBEAT), self.now)
                new = alerts.evaluate(session, checks(self.cloud.settings), self.now)
            _heal(self.cloud, new, self.now)
            self.events += new

    def actions(self) -> list[HealingAction]:
        with self.cloud.session() as session:
            return healing.list_actions(session)

    def alerts_firing(self, device: str) -> list[Alert]:
        with self.cloud.session() as session:
            return [
                a for a in alerts.list_alerts(session, "firing") if a.subject.device_id == device
            ]

    def done(self) -> dict[str, HealingAction]:
        return {a.rule: a for a in self.actions() if a.state == "done"}


@pytest.fixture
def synthetic(cloud: Cloud, api: TestClient) -> Fleet:
    steady = Fleet(cloud)
    steady.tick(40)  # the detectors' history
    return steady


def test_a_steady_fleet_takes_no_action(synthetic: Fleet) -> None:
    synthetic.tick(120)  # 10 minutes of simulated fleet time
    assert synthetic.actions() == []


def test_a_failed_model_is_restarted_and_served_by_the_cloud_meanwhile(synthetic: Fleet) -> None:
    synthetic.edges["gw-2"].faults.add("model")
    synthetic.tick(3)
    done = synthetic.done()
    assert set(done) == {"restart-failed-model", "cloud-while-unhealthy"}, synthetic.actions()
    restart, route = done["restart-failed-model"], done["cloud-while-unhealthy"]
    assert restart.alert_id == route.alert_id and restart.alert_kind == "model_unhealthy"
    assert restart.subject.device_id == "gw-2" and restart.changes == {"reload": ["pm"]}
    skipped = [a for a in synthetic.actions() if a.state == "skipped"]
    assert [a.rule for a in skipped] == ["rollback-bad-rollout"]
    assert "no active rollout of pm" in skipped[0].detail
    # The device reads its orders in its desired state; the others get none
    orders = device_desired(synthetic.cloud, "gw-2").settings.healing
    assert orders is not None
    assert orders.placement == {"pm": "cloud"} and orders.reload == {"pm": restart.action_id}
    assert device_desired(synthetic.cloud, "gw-1").settings.healing is None
    # Healed: the orders are lifted when the alert resolves
    synthetic.edges["gw-2"].faults.clear()
    synthetic.tick(4)
    assert device_desired(synthetic.cloud, "gw-2").settings.healing is None
    ended = {a.rule: a for a in synthetic.actions()}
    assert not ended["cloud-while-unhealthy"].active
    assert ended["cloud-while-unhealthy"].ended_at is not None
    # Every action, the skip too, is in the audit log as the healer
    with synthetic.cloud.session() as session:
        rows = session.scalars(select(AuditEntryRow).where(AuditEntryRow.actor == "healer"))
        logged = [(r.action, r.detail) for r in rows]
    assert ("healing restart_model", f"restart-failed-model: done: {restart.detail}") in logged
    assert any(action == "healing rollback" for action, _ in logged)


def test_a_growing_backlog_raises_sync_then_falls_back(synthetic: Fleet) -> None:
    with synthetic.cloud.session() as session:
        device_settings.set_level(
            session, "device", "gw-3",
            EdgeConfig(sync_bandwidth_bytes_per_s=1000.0, sync_window="22:00-06:00"), "t",
            synthetic.now,
        )  # fmt: skip
    synthetic.edges["gw-3"].faults.add("backlog")
    synthetic.tick(4)
    action = synthetic.done()["drain-backlog"]
    assert action.alert_kind == "backlog_growth" and action.active
    desired = device_desired(synthetic.cloud, "gw-3").settings
    assert desired.sync_bandwidth_bytes_per_s == 4000.0 and desired.sync_window == ""
    assert desired.batch_max_wait_s == 0.0
    with synthetic.cloud.session() as session:
        shown = device_settings.effective(
            session, "gw-3", EdgeConfig(), healing.orders_for(session, "gw-3")[1]
        )
    assert shown.sources["sync_bandwidth_bytes_per_s"] == "healing:drain-backlog"
    synthetic.edges["gw-3"].faults.clear()
    synthetic.edges["gw-3"].backlog = 0
    synthetic.tick(5)
    # Drained: the alert resolved, and the overlay is held half an hour (hold_s: 1800)
    held = synthetic.done()["drain-backlog"]
    assert held.active and held.lift_at is not None and held.lift_at > synthetic.now + 1700
    assert device_desired(synthetic.cloud, "gw-3").settings.sync_window == ""
    # The backlog grows again within the hold (the alert reopens): the same action serves it
    synthetic.edges["gw-3"].faults.add("backlog")
    synthetic.tick(4)
    raises = [a for a in synthetic.actions() if a.rule == "drain-backlog"]
    assert len(raises) == 1 and raises[0].active and raises[0].lift_at is None
    synthetic.edges["gw-3"].faults.clear()
    synthetic.edges["gw-3"].backlog = 0
    synthetic.tick(5)
    synthetic.now += 1800  # the hold is over: the device's own settings again
    synthetic.tick()
    back = device_desired(synthetic.cloud, "gw-3").settings
    assert back.sync_bandwidth_bytes_per_s == 1000.0 and back.sync_window == "22:00-06:00"
    ended = synthetic.done()["drain-backlog"]
    assert not ended.active and ended.ended_at == synthetic.now


def test_a_stalled_sync_alerts_and_raises_sync(synthetic: Fleet) -> None:
    edge = synthetic.edges["gw-1"]
    original = edge.report

    def stalled(interval_s: float = 5.0):  # type: ignore[no-untyped-def]
        report = original(interval_s)
        report.store.oldest_unsynced_age_s = 900.0  # nothing left the device for 15 minutes
        return report

    edge.report = stalled  # type: ignore[method-assign]
    synthetic.tick(2)
    action = synthetic.done()["drain-backlog"]
    assert action.alert_kind == "sync_stopped" and action.subject.device_id == "gw-1"
    assert device_desired(synthetic.cloud, "gw-1").settings.batch_max_wait_s == 0.0


def test_a_slow_cloud_link_sends_the_model_to_the_edge_until_it_is_fast_again(
    synthetic: Fleet,
) -> None:
    synthetic.edges["gw-1"].faults.add("slow_link")
    synthetic.tick(3)
    (alert,) = synthetic.alerts_firing("gw-1")
    assert alert.kind == "cloud_link_slow" and alert.subject.model == "pm"
    assert alert.evidence["value"] > alert.evidence["baseline"] + 150
    action = synthetic.done()["edge-while-link-slow"]
    assert action.alert_id == alert.alert_id and action.changes == {"placement": {"pm": "edge"}}
    orders = device_desired(synthetic.cloud, "gw-1").settings.healing
    assert orders is not None and orders.placement == {"pm": "edge"}
    assert device_desired(synthetic.cloud, "gw-2").settings.healing is None
    synthetic.edges["gw-1"].faults.clear()  # the link is fast again: the model goes back
    synthetic.tick(4)
    assert synthetic.alerts_firing("gw-1") == []
    assert device_desired(synthetic.cloud, "gw-1").settings.healing is None


def test_a_model_the_device_cannot_answer_is_not_sent_to_the_edge(synthetic: Fleet) -> None:
    synthetic.edges["gw-2"].faults.update({"slow_link", "model"})  # slow link, pm failed
    synthetic.tick(3)
    actions = {a.rule: a for a in synthetic.actions()}
    skipped = actions["edge-while-link-slow"]
    assert skipped.state == "skipped" and "not ready at the device" in skipped.detail
    orders = device_desired(synthetic.cloud, "gw-2").settings.healing
    assert orders is not None and orders.placement == {"pm": "cloud"}  # cloud-while-unhealthy


def test_rate_limits_hold_per_subject_and_fleet_wide(synthetic: Fleet) -> None:
    edge = synthetic.edges["gw-2"]
    for _ in range(5):  # the alert fires, resolves, fires again: a new alert each time
        edge.faults.add("model")
        synthetic.tick(3)
        edge.faults.clear()
        synthetic.tick(4)
        synthetic.now += 400  # past the flap window: a new alert, not a reopening
    restarts = [a for a in synthetic.actions() if a.rule == "restart-failed-model"]
    assert [a.state for a in restarts].count("done") == 3  # max_actions: 3 an hour
    limited = [a for a in restarts if a.state == "skipped"]
    assert limited and all("rate limited" in a.detail for a in limited)


def test_a_rollout_whose_alerts_began_with_it_is_rolled_back_and_revert_restarts_it(
    synthetic: Fleet, api: TestClient
) -> None:
    with synthetic.cloud.session() as session:
        started = rollout.start(
            session,
            RolloutRequest(model="pm", version="2", canary_share=1.0, soak_s=3600),
            "ops",
            synthetic.now,
        )
    synthetic.edges["gw-1"].faults.add("errors")
    synthetic.tick(4)
    action = synthetic.done()["rollback-bad-rollout"]
    assert action.changes["rollout_id"] == started.rollout_id
    with synthetic.cloud.session() as session:
        assert rollout.get(session, started.rollout_id).status == "aborted"
    # Reversible: an operator reverts, the same rollout starts again (audited as the operator)
    reverted = api.post(f"/api/v1/healing/{action.action_id}/revert")
    assert reverted.status_code == 200, reverted.text
    assert reverted.json()["state"] == "reverted" and "started again" in reverted.json()["detail"]
    with synthetic.cloud.session() as session:
        active = [r for r in rollout.list_rollouts(session, "pm") if r.status != "aborted"]
    assert len(active) == 1 and active[0].to_version == "2"
    again = api.post(f"/api/v1/healing/{action.action_id}/revert")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_a_rollout_older_than_the_window_is_not_blamed(synthetic: Fleet) -> None:
    with synthetic.cloud.session() as session:
        started = rollout.start(
            session,
            RolloutRequest(model="pm", version="2", canary_share=1.0, soak_s=3600 * 24),
            "ops",
            synthetic.now - 7200,  # two hours before the trouble
        )
    synthetic.edges["gw-1"].faults.add("errors")
    synthetic.tick(4)
    skipped = [a for a in synthetic.actions() if a.rule == "rollback-bad-rollout"]
    assert skipped and all(a.state == "skipped" for a in skipped)
    assert any("not blamed" in a.detail for a in skipped), skipped
    with synthetic.cloud.session() as session:
        assert rollout.get(session, started.rollout_id).status != "aborted"


def test_a_dry_run_rule_records_and_changes_nothing(
    metadata_url: str, tmp_path: Path, classifier_onnx: bytes
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - name: try-restart\n"
        "    when: [model_unhealthy]\n"
        "    action: restart_model\n"
        "    dry_run: true\n"
    )
    opened = open_cloud(_settings(tmp_path, metadata_url, healing_rules_file=rules))
    try:
        with opened.session() as session:
            issued = fleet.create_enrollment_token(session, "north", "gw-1", 600, T0)
            fleet.enroll(
                session,
                EnrollRequest(
                    token=issued.token, device_id="gw-1", kind="edge-server",
                    capabilities=Capabilities(cores=2, memory_mb=1024), agent_version="t",
                    csr=pki.device_csr(pki.new_key(), "gw-1"),
                ),
                T0, opened.device_authority(),
            )  # fmt: skip
        steady = Fleet(opened)
        steady.edges = {"gw-1": FakeEdge("gw-1", seed=1, faults={"model"})}
        steady.tick(3)
        (action,) = steady.actions()
        assert action.state == "skipped" and action.detail.startswith("dry run: would have")
        assert device_desired(opened, "gw-1").settings.healing is None
    finally:
        opened.close()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rules: [{name: a, when: [nope], action: restart_model}]", "rules.0.when.0"),
        ("rules: [{name: a, when: [latency], action: reboot}]", "rules.0.action"),
        ("rules: [{name: a, on: [latency], action: restart_model}]", "rules.0.when"),
        ("rules: [{name: a, when: [latency], action: rollback}, "
         "{name: a, when: [drift], action: rollback}]", "unique"),
        ("rules: [{name: Bad Name, when: [latency], action: rollback}]", "rules.0.name"),
        ("rules: [oops", "not valid YAML"),
    ],
)  # fmt: skip
def test_bad_rules_are_refused_with_the_place_named(text: str, says: str) -> None:
    with pytest.raises(HealingRulesError, match=r"rules\.yaml") as caught:
        parse(text, "rules.yaml")
    assert says in str(caught.value)


def test_a_cloud_with_an_unreadable_rules_file_does_not_start(
    metadata_url: str, tmp_path: Path
) -> None:
    with pytest.raises(HealingRulesError, match="cannot read"):
        open_cloud(_settings(tmp_path, metadata_url, healing_rules_file=tmp_path / "missing"))
    assert load_rules(None).rules  # the built-in ones


def test_api_and_cli_list_actions_rules_and_refuse_bad_reverts(
    synthetic: Fleet, api: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    synthetic.edges["gw-2"].faults.add("model")
    synthetic.tick(3)
    listed = api.get("/api/v1/healing", params={"device": "gw-2"})
    assert listed.status_code == 200 and len(listed.json()) == 3
    assert api.get("/api/v1/healing", params={"device": "gw-1"}).json() == []
    rules = api.get("/api/v1/healing/rules").json()
    assert rules["rules"][0]["name"] == "restart-failed-model"
    missing = api.post("/api/v1/healing/nope/revert")
    assert missing.status_code == 404 and "hybridai alerts actions" in missing.json()["error"]
    skipped = next(a for a in listed.json() if a["state"] == "skipped")
    refused = api.post(f"/api/v1/healing/{skipped['action_id']}/revert")
    assert refused.status_code == 409 and "only a done action" in refused.json()["error"]
    route = next(a for a in listed.json() if a["rule"] == "cloud-while-unhealthy")
    # The CLI, over the same app, as the admin
    admin = synthetic.cloud.settings.admin_token_path.read_text().strip()

    @contextlib.contextmanager
    def in_process(base_url: str, *, token: str | None = None, **_: Any) -> Iterator[TestClient]:
        api.headers.clear()  # the app stays up: the CLI's `with` must not close it
        if token:
            api.headers["Authorization"] = f"Bearer {token}"
        yield api

    monkeypatch.setattr(_api, "client", in_process)
    monkeypatch.setenv("HYBRIDAI_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HYBRIDAI_TOKEN", admin)
    monkeypatch.setenv("COLUMNS", "300")  # one table row per action
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    shown = runner.invoke(cli, ["alerts", "actions", "--json"])
    assert shown.exit_code == 0, shown.output
    assert {a["rule"] for a in json.loads(shown.output)} >= {"restart-failed-model"}
    table = runner.invoke(cli, ["alerts", "actions"])
    assert "cloud-while-unhealthy" in table.output and "route_to_cloud" in table.output
    assert "restart_model" in runner.invoke(cli, ["alerts", "rules"]).output
    undone = runner.invoke(cli, ["alerts", "revert", route["action_id"]])
    assert undone.exit_code == 0, undone.output
    assert device_desired(synthetic.cloud, "gw-2").settings.healing is not None  # reload stays
    orders = device_desired(synthetic.cloud, "gw-2").settings.healing
    assert orders is not None and orders.placement == {}


def test_an_action_two_alerts_call_for_is_taken_once_and_handed_over(synthetic: Fleet) -> None:
    edge = synthetic.edges["gw-1"]
    original = edge.report
    stalled = {"on": True}

    def report(interval_s: float = 5.0):  # type: ignore[no-untyped-def]
        made = original(interval_s)
        if stalled["on"]:
            made.store.oldest_unsynced_age_s = 900.0
        return made

    edge.report = report  # type: ignore[method-assign]
    edge.faults.add("backlog")
    synthetic.tick(4)
    firing = {a.kind: a for a in synthetic.alerts_firing("gw-1")}
    assert {"backlog_growth", "sync_stopped"} <= set(firing)
    done = [a for a in synthetic.actions() if a.rule == "drain-backlog" and a.state == "done"]
    assert len(done) == 1  # one overlay, not one per alert
    # The backlog drains; the sync still stands still: the overlay stays, under that alert
    edge.faults.clear()
    edge.backlog = 0
    synthetic.tick(5)
    (action,) = [a for a in synthetic.actions() if a.rule == "drain-backlog"]
    assert action.active and action.alert_id == firing["sync_stopped"].alert_id
    stalled["on"] = False
    synthetic.tick(5)
    (action,) = [a for a in synthetic.actions() if a.rule == "drain-backlog"]
    assert action.active and action.lift_at is not None  # held after the last alert ended
    synthetic.now += 1800
    synthetic.tick()
    (action,) = [a for a in synthetic.actions() if a.rule == "drain-backlog"]
    assert not action.active and action.lift_at is None


def test_slower_answers_during_a_rollout_do_not_roll_it_back(synthetic: Fleet) -> None:
    """Latency rises with load on old and new versions alike: the built-in rules leave it be."""
    with synthetic.cloud.session() as session:
        started = rollout.start(
            session,
            RolloutRequest(model="pm", version="2", canary_share=1.0, soak_s=3600 * 24),
            "ops",
            synthetic.now,
        )
    synthetic.edges["gw-1"].faults.add("latency")
    synthetic.tick(4)
    assert [a.kind for a in synthetic.alerts_firing("gw-1")] == ["latency"]
    assert [a for a in synthetic.actions() if a.rule == "rollback-bad-rollout"] == []
    with synthetic.cloud.session() as session:
        assert rollout.get(session, started.rollout_id).status != "aborted"
