"""Three cloud replicas behind nginx, sharing PostgreSQL and an S3 lake (``weed``): real processes.

Edges sync through nginx while a rollout runs and the test kills (-9) and restarts replicas
one after another. Every acknowledged record lands in the lake exactly once, the rollout
completes (its ticker's lease moves to a live replica), and nginx's access log shows that no
caller was answered with a 5xx other than 503. Login misses spread over the replicas by
round robin still lock the user after the same number of misses as on one process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _fleet import MODEL, Feeder, assert_lake_exactly, upload_and_deploy
from _models import train_classifier_onnx
from _s3 import ACCESS_KEY, SECRET_KEY, S3Server
from hybridai.demo.fleet import wait_for
from hybridai.demo.replicas import ReplicaFleet, nginx_binary, wait_port_closed

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

EDGES = (("edge-a", "north"), ("edge-b", "north"), ("edge-c", "south"))
PASSWORD = "correct-horse-battery-staple-9"


def _require_nginx() -> None:
    if nginx_binary() is None:
        message = "nginx is missing: run tests/system_packages.sh as root (apt-get install nginx)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def fleet(metadata_url: str, s3: S3Server, tmp_path: Path) -> Iterator[ReplicaFleet]:
    _require_nginx()
    env = {
        "HYBRIDAI_CLOUD_DATABASE_URL": metadata_url,
        "HYBRIDAI_CLOUD_LAKE_URL": s3.root(),
        "HYBRIDAI_CLOUD_BLOB_URL": s3.root(),
        "HYBRIDAI_CLOUD_LAKE_S3_ENDPOINT_URL": s3.endpoint,
        "HYBRIDAI_CLOUD_LAKE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "HYBRIDAI_CLOUD_LAKE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "HYBRIDAI_CLOUD_LAKE_S3_REGION": "us-east-1",
        "HYBRIDAI_CLOUD_LAKE_S3_ALLOW_HTTP": "true",
        "HYBRIDAI_CLOUD_ROLLOUT_TICK_S": "0.5",
        "HYBRIDAI_CLOUD_LEASE_TTL_S": "3",
    }
    workspace = tmp_path / "fleet"
    workspace.mkdir()
    replicas = ReplicaFleet(workspace, env, count=3, access_log=True)
    try:
        replicas.start_cloud()
        yield replicas
    finally:
        replicas.close()


def _answers(fleet: ReplicaFleet) -> list[tuple[int, str, str, str, str]]:
    """``(status, method, path, replicas tried, their statuses)`` of every answer of nginx."""
    lines = (fleet.workspace / "nginx" / "access.log").read_text().splitlines()
    found = []
    for line in lines:
        status, method, path, replicas, statuses = [*line.split("|", 4), "", "", ""][:5]
        found.append((int(status), method, path, replicas, statuses))
    return found


def _rollout(fleet: ReplicaFleet, version: str) -> dict[str, Any]:
    body = {
        "model": MODEL,
        "version": version,
        "canary_share": 0.34,
        "step_share": 0.33,
        "soak_s": 3,
        "abort_unhealthy_share": 0.5,
        "device_timeout_s": 60,
        "gates": {"allow_idle": True},
    }
    rollout: dict[str, Any] = fleet.call("POST", "/api/v1/rollouts", json=body)
    return rollout


def _status(fleet: ReplicaFleet, rollout_id: str) -> str:
    return str(fleet.call("GET", f"/api/v1/rollouts/{rollout_id}")["status"])


ON_POSTGRES = pytest.mark.parametrize("metadata_url", ["postgres"], indirect=True)


@ON_POSTGRES
def test_login_misses_on_different_replicas_count_together(fleet: ReplicaFleet) -> None:
    fleet.call(
        "POST", "/api/v1/users", json={"name": "vera", "role": "viewer", "password": PASSWORD}
    )
    assert fleet.cloud is not None
    with httpx.Client(base_url=fleet.cloud.url, verify=fleet.verify(), timeout=30) as anyone:

        def login(password: str) -> httpx.Response:
            body = {"username": "vera", "password": password}
            return anyone.post("/api/v1/auth/login", json=body)

        # nginx spreads these over 3 replicas: counted per process, 5 free misses each would
        # allow 15 before any lock. Counted together, the 5th locks (1 s, then 2 s, 4 s: a
        # slow password check may outlast the first lock, hence "at most 7")
        codes = []
        while len(codes) < 12 and 429 not in codes:
            codes.append(login("wrong-password").status_code)
        assert codes[-1] == 429 and set(codes[:-1]) == {401}, codes
        assert 5 <= len(codes) - 1 <= 7, codes
        throttled = login(PASSWORD)  # even the right password waits
        assert throttled.status_code == 429, throttled.text
        assert throttled.json()["code"] == "too_many_attempts"
        assert int(throttled.headers["Retry-After"]) >= 1
    upstreams = {a[3] for a in _answers(fleet) if a[2] == "/api/v1/auth/login"}
    assert len(upstreams) == 3, f"logins reached {upstreams}: all replicas should have seen some"


@ON_POSTGRES
def test_replicas_die_and_return_while_edges_sync_and_a_rollout_runs(
    fleet: ReplicaFleet, classifier_onnx: bytes
) -> None:
    for device, site in EDGES:
        fleet.start_edge(device, site)
    fleet.wait_enrolled(len(EDGES))
    feeders = [Feeder(fleet.edges[d].url, d, machines=2, seed=i) for i, (d, _) in enumerate(EDGES)]
    upload_and_deploy(fleet, classifier_onnx)
    wait_for("every edge on v1", lambda: fleet.serving(MODEL, "1"), 90)
    info = fleet.call(
        "POST",
        f"/api/v1/models/{MODEL}/versions",
        files={"edge": ("e", train_classifier_onnx(seed=4))},
    )
    good = str(info["version"])

    rollout = _rollout(fleet, good)
    for victim in (0, 1, 2, 0):  # each replica dies once while data flows; the first twice
        for feeder in feeders:
            feeder.feed(20)
        fleet.kill_replica(victim)
        wait_port_closed(fleet.replica_ports[victim])
        for feeder in feeders:
            feeder.feed(20)
        time.sleep(3.5)  # past the lease TTL: its tickers must run elsewhere meanwhile
        fleet.start_replica(victim)

    wait_for(
        "the rollout to succeed", lambda: _status(fleet, rollout["rollout_id"]) == "succeeded", 120
    )
    wait_for(f"every edge on v{good}", lambda: fleet.serving(MODEL, good), 60)
    fleet.wait_drained(120)
    acked = {stream: sum(f.acked[stream] for f in feeders) for stream in feeders[0].acked}
    assert acked["telemetry"] > 0
    assert_lake_exactly(fleet, acked)

    answers = _answers(fleet)
    failed = [a for a in answers if a[0] >= 500 and a[0] != 503]
    assert failed == [], f"callers saw 5xx other than 503: {failed[:10]}"
    batches = [a for a in answers if "/batches/" in a[2]]
    assert batches and all(a[0] < 500 or a[0] == 503 for a in batches)
    retried = [a for a in answers if "," in a[3]]  # nginx tried another replica
    print(
        f"{len(answers)} answers, {len(retried)} retried on another replica, "
        f"{sum(a[0] == 503 for a in answers)} answered 503"
    )
