"""Edge settings set by an operator reach running edges: real cloud and edge processes over TLS.

``hybridai fleet config set --site`` reaches both edges of the site (their status shows the
value and that it came from the cloud), a device's own value overrides the site's, unsetting it
brings the site's back, a tag level applies by the device's tags, an invalid value is a 422
that names the setting, and every change is in the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from _fleet import local_fleet
from hybridai.cli.main import app
from hybridai.demo.fleet import LocalFleet, wait_for

pytestmark = pytest.mark.slow
SITE = "plant-c"
A, B = "edge-ca", "edge-cb"
BANDWIDTH = "sync_bandwidth_bytes_per_s"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[LocalFleet]:
    with local_fleet(tmp_path / "fleet") as f:
        f.start_edge(A, SITE)
        f.start_edge(B, SITE)
        f.wait_enrolled(2)
        yield f


def cli(fleet: LocalFleet, *args: str) -> Result:
    assert fleet.cloud is not None
    token = (fleet.workspace / "cloud" / "admin.token").read_text().strip()
    env = {
        "HYBRIDAI_CLOUD_URL": fleet.cloud.url,
        "HYBRIDAI_TOKEN": token,
        "HYBRIDAI_CA_FILE": str(fleet.ca_file),
    }
    return CliRunner().invoke(app, list(args), env=env)


def applied(fleet: LocalFleet, device: str, key: str) -> dict[str, Any] | None:
    setting: dict[str, Any] | None = fleet.edge_status(device).get("settings", {}).get(key)
    return setting


def wait_applied(fleet: LocalFleet, device: str, key: str, value: Any) -> None:
    wanted = {"value": value, "source": "cloud"}
    wait_for(f"{device} to run {key}={value}", lambda: applied(fleet, device, key) == wanted, 60)


def test_site_and_device_settings_reach_running_edges_audited(fleet: LocalFleet) -> None:
    before = applied(fleet, A, "heartbeat_interval_s")
    assert before == {"value": 1.0, "source": "cloud"}  # the cloud's default level
    assert applied(fleet, A, BANDWIDTH) is None  # set nowhere: no cap

    done = cli(fleet, "fleet", "config", "set", "--site", SITE, f"{BANDWIDTH}=20000",
               "heartbeat_interval_s=0.5", "stream_priorities.vibration=low")  # fmt: skip
    assert done.exit_code == 0, done.output
    for device in (A, B):
        wait_applied(fleet, device, BANDWIDTH, 20000.0)
        wait_applied(fleet, device, "heartbeat_interval_s", 0.5)
        wait_applied(fleet, device, "stream_priorities.vibration", "low")

    done = cli(fleet, "fleet", "config", "set", "--device", B, f"{BANDWIDTH}=5000")
    assert done.exit_code == 0, done.output
    wait_applied(fleet, B, BANDWIDTH, 5000.0)
    assert applied(fleet, A, BANDWIDTH) == {"value": 20000.0, "source": "cloud"}
    shown = cli(fleet, "fleet", "config", "show", "--device", B, "--json")
    assert shown.exit_code == 0, shown.output
    sources = json.loads(shown.output)["sources"]
    assert sources[BANDWIDTH] == f"device:{B}"
    assert sources["heartbeat_interval_s"] == f"site:{SITE}"
    assert sources["sync_interval_s"] == "default"
    status = cli(fleet, "edge", "status", "--url", fleet.edges[B].url)
    assert status.exit_code == 0 and BANDWIDTH in status.output and "cloud" in status.output

    done = cli(fleet, "fleet", "config", "unset", "--device", B, BANDWIDTH)
    assert done.exit_code == 0, done.output
    wait_applied(fleet, B, BANDWIDTH, 20000.0)  # the site's value again

    # A tag level applies to the devices carrying the tag, between the site and the device.
    assert cli(fleet, "fleet", "tag", B, "--add", "line=3").exit_code == 0
    done = cli(fleet, "fleet", "config", "set", "--tag", "line=3", "sync_window=22:00-06:00")
    assert done.exit_code == 0, done.output
    wait_applied(fleet, B, "sync_window", "22:00-06:00")
    assert applied(fleet, A, "sync_window") is None

    # Refused: a value out of range, a typo; nothing changes
    bad = cli(fleet, "fleet", "config", "set", "--site", SITE, f"{BANDWIDTH}=-1")
    assert bad.exit_code != 0 and "422" in bad.output and BANDWIDTH in bad.output
    assert fleet.api is not None
    typo = fleet.api.patch(f"/api/v1/fleet-config/site:{SITE}", json={"sync_bandwith": 1})
    assert typo.status_code == 422
    assert typo.json()["code"] == "invalid_input"
    assert "unknown setting 'sync_bandwith'" in typo.json()["error"]
    level = fleet.call("GET", "/api/v1/fleet-config")
    site_level = next(x for x in level if x["level"] == "site")
    assert site_level["settings"][BANDWIDTH] == 20000.0

    # The audit log shows each change, who made it and what it set, and the refusals
    entries = fleet.call("GET", "/api/v1/audit", params={"action": "/api/v1/fleet-config"})
    seen = [(e["action"], e["target"], e["result"]) for e in entries]
    scope = "PATCH /api/v1/fleet-config/{scope}"
    assert (scope, f"scope=site:{SITE} set heartbeat_interval_s=0.5, "
            f'stream_priorities={{"vibration": "low"}}, {BANDWIDTH}=20000.0', "ok") in seen  # fmt: skip
    assert (scope, f"scope=device:{B} set {BANDWIDTH}=5000.0", "ok") in seen
    assert ("DELETE /api/v1/fleet-config/{scope}", f"scope=device:{B} unset {BANDWIDTH}", "ok") in (
        seen
    )
    refused = [t for a, t, r in seen if a == scope and r == "refused"]
    assert len(refused) == 2 and all(t == f"scope=site:{SITE}" for t in refused)
