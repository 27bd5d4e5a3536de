"""An edge started wrong says so: refused at start, or each problem logged once with its fix.

Real ``hybridai edge run`` processes against a real cloud over loopback TLS. Configuration that
no retry can fix (plain http, a missing CA file, a token the cloud refuses for good, a data
directory another agent holds) ends the process with a non-zero exit and a message; what may
heal (the cloud unreachable, an untrusted certificate) keeps the agent retrying, logs the
problem once, and shows it in the agent's status.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _fleet import local_fleet
from hybridai.demo.fleet import LocalFleet, wait_for
from hybridai.demo.launcher import free_port

pytestmark = pytest.mark.slow
EXIT_BOUND_S = 120  # generous: imports on a busy 2-core machine; a refusal takes one round trip


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    env = {"HYBRIDAI_EDGE_HEARTBEAT_INTERVAL_S": "1"}
    with local_fleet(tmp_path_factory.mktemp("startup")) as fleet:
        fleet.start_edge("edge-a", "plant-1", env=env)
        yield fleet


@pytest.fixture(scope="module", autouse=True)
def expiring_token(fleet: LocalFleet) -> dict[str, Any]:
    """The shortest-lived token the cloud issues (60 s), made when the module's fleet starts."""
    body: dict[str, Any] = fleet.call(
        "POST",
        "/api/v1/enrollment-tokens",
        json={"site": "plant-1", "device_id": "edge-x", "ttl_s": 60},
    )
    return body


def edge_args(cloud: str, data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hybridai",
        "edge",
        "run",
        "--cloud",
        cloud,
        "--data-dir",
        str(data_dir),
        "--port",
        str(free_port()),
        *extra,
    ]


def run_to_exit(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run an edge that must exit by itself; its exit code and its output, one line."""
    done = subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=EXIT_BOUND_S,
        env={**os.environ, "COLUMNS": "400"},
    )
    return done.returncode, " ".join((done.stdout + done.stderr).split())


def token(fleet: LocalFleet, device: str) -> str:
    body = fleet.call(
        "POST",
        "/api/v1/enrollment-tokens",
        json={"site": "plant-1", "device_id": device, "ttl_s": 600},
    )
    return str(body["token"])


@pytest.mark.parametrize(
    ("cloud", "ca", "expected"),
    [
        ("http://127.0.0.1:8400", None, "is plain http"),
        ("127.0.0.1:8400", None, "is not an https:// URL"),
        ("https://127.0.0.1:99999", None, "is not a URL"),
        ("https://", None, "names no host"),
        ("https://127.0.0.1:8400", "missing.crt", "missing.crt does not exist"),
        ("https://127.0.0.1:8400", "not-a-cert.crt", "holds no PEM certificate"),
    ],
)
def test_configuration_that_cannot_work_is_refused_at_start(
    tmp_path: Path, cloud: str, ca: str | None, expected: str
) -> None:
    (tmp_path / "not-a-cert.crt").write_text("hello\n")
    extra = ["--enroll-token", "t0ken", *(["--ca-file", str(tmp_path / ca)] if ca else [])]

    code, output = run_to_exit(edge_args(cloud, tmp_path / "edge", *extra), tmp_path)

    assert code != 0, output
    assert "cannot start the edge agent" in output and expected in output, output
    assert not (tmp_path / "edge" / "store.db").exists()  # refused before anything was made


def test_a_device_with_neither_certificate_nor_token_is_refused(tmp_path: Path) -> None:
    code, output = run_to_exit(edge_args("https://127.0.0.1:8400", tmp_path / "e"), tmp_path)

    assert code != 0
    assert "holds no certificate yet" in output and "--enroll-token" in output, output


def test_a_token_the_cloud_refuses_for_good_ends_the_agent(
    fleet: LocalFleet, expiring_token: dict[str, Any], tmp_path: Path
) -> None:
    ca = str(fleet.ca_file.resolve())
    cloud = fleet.cloud.url if fleet.cloud else ""
    used = token(fleet, "edge-u")
    first = edge_args(cloud, tmp_path / "first", "--ca-file", ca, "--device-id", "edge-u")
    with subprocess.Popen([*first, "--enroll-token", used], cwd=tmp_path) as process:
        try:
            fleet.wait_enrolled(2, timeout_s=60)
        finally:
            process.terminate()
    time.sleep(max(0.0, expiring_token["expires_at"] + 1 - time.time()))
    expired = str(expiring_token["token"])
    cases = {"unknown": "no-such-token", "used": used, "expired": expired}

    for case, secret in cases.items():
        device = "edge-x" if case == "expired" else "edge-u"
        args = edge_args(cloud, tmp_path / case, "--ca-file", ca, "--device-id", device)
        started = time.monotonic()
        code, output = run_to_exit([*args, "--enroll-token", secret], tmp_path)

        assert code != 0, f"{case}: {output}"
        assert "enrollment refused by the cloud (bad_enrollment_token)" in output, output
        assert "hybridai fleet enroll-token" in output, output  # what to do
        assert time.monotonic() - started < EXIT_BOUND_S


def _status(url: str) -> dict[str, object]:
    data: dict[str, object] = httpx.get(f"{url}/api/v1/status", timeout=10).json()
    return data


def _run_retrying(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """An agent that cannot enroll: it never gets its site's LAN keys, so its API is open."""
    env = {**os.environ, "HYBRIDAI_EDGE_LAN_AUTH": "open"}
    with open(log, "wb") as out:
        return subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)


def _agent_url(args: list[str]) -> str:
    return f"http://127.0.0.1:{args[args.index('--port') + 1]}"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("nothing-listens", "nothing listens at 127.0.0.1:"),
        ("untrusted", "is not signed by a CA this edge trusts: start the edge with --ca-file"),
    ],
)
def test_a_connection_problem_is_logged_once_with_its_fix_and_shown_in_status(
    fleet: LocalFleet, tmp_path: Path, case: str, expected: str
) -> None:
    assert fleet.cloud is not None
    cloud = f"https://127.0.0.1:{free_port()}" if case == "nothing-listens" else fleet.cloud.url
    args = edge_args(cloud, tmp_path / "e", "--enroll-token", "t0ken", "--device-id", "edge-n")
    log, url = tmp_path / "edge.log", _agent_url(args)
    process = _run_retrying(args, tmp_path, log)
    try:
        wait_for("the agent's API", lambda: _reachable(url), 90)
        wait_for("the error in status", lambda: bool(_status(url).get("last_error")), 60)
        time.sleep(6)  # several more retries (backoff from 0.5 s)

        status = _status(url)
        text = " ".join(log.read_text().split())
    finally:
        process.terminate()
        process.wait(30)
    assert expected in str(status["last_error"]), status["last_error"]
    assert status["enrollment"] == "enrolling"
    assert text.count(expected) == 1, text  # once, not on every retry
    assert process.returncode is not None


def _reachable(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/live", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_second_agent_on_one_data_directory_exits_naming_the_first(
    fleet: LocalFleet, tmp_path: Path
) -> None:
    holder = fleet.edges["edge-a"]
    data_dir = fleet.workspace / "edge-a"
    assert fleet.cloud is not None
    args = edge_args(fleet.cloud.url, data_dir, "--device-id", "edge-a")

    code, output = run_to_exit(args, fleet.workspace)

    assert code != 0
    assert re.search(rf"another edge agent \(PID {holder.process.pid}\) runs on ", output), output
    assert holder.alive() and _reachable(holder.url)  # the first one is unharmed


def test_heartbeats_do_not_fill_the_audit_log(fleet: LocalFleet) -> None:
    seen = fleet.call("GET", "/api/v1/devices/edge-a")["last_seen"]
    wait_for(
        "three more heartbeats",
        lambda: fleet.call("GET", "/api/v1/devices/edge-a")["last_seen"] > seen + 2,
        60,
    )
    fleet.call("PATCH", "/api/v1/devices/edge-a/tags", json={"add": {"line": "3"}})

    def actions() -> list[str]:
        entries = fleet.call("GET", "/api/v1/audit", params={"limit": 100})
        return [e["action"] for e in entries]

    # the middleware appends after the answer is sent: wait for the change to land
    tags = "PATCH /api/v1/devices/{device_id}/tags"
    wait_for("the tag change in the audit log", lambda: tags in actions(), 30)
    recent = actions()
    assert "POST /api/v1/devices/{device_id}/status" not in recent, recent
    assert "POST /api/v1/enroll" in recent, recent
