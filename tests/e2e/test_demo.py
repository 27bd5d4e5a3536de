"""The demo, end to end: the main job must work and its summary must tell the truth."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _fleet_processes(folder: Path) -> list[str]:
    """Command lines of the processes running in ``folder`` (the launcher's children do)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if Path(os.readlink(proc / "cwd")) == folder:
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def test_demo_short_run_summary(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybridai",
            "demo",
            "--duration",
            "12",
            "--json",
            "--workspace",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)

    assert summary["records_ingested"] > 1000
    assert summary["records_lost"] == 0
    assert summary["records_synced"] == summary["records_ingested"]
    assert summary["lake_duplicates"] == 0
    assert 0 < summary["wire_bytes_ratio_vs_json"] < 1
    assert summary["requests_edge"] > 0
    assert summary["requests_cloud"] > 0
    assert summary["outage"]["backlog_at_restore"] > 0  # the cut was real and data waited
    assert summary["model_versions"] == {d: {"pm": "2"} for d in ("edge-1", "edge-2", "edge-3")}
    assert summary["rollout"]["status"] == "succeeded"  # v2 went canary first, then waves
    assert [len(s["devices"]) for s in summary["rollout"]["steps"]] == [1, 1, 1]
    for version in ("v1", "v2"):
        assert summary["holdout_quality_cloud_variant"][version]["roc_auc"] > 0.7
    for key in (
        "records_ingested",
        "records_synced",
        "records_lost",
        "wire_bytes_ratio_vs_json",
        "requests_edge",
        "requests_cloud",
        "model_versions",
        "wall_s",
    ):
        assert key in summary
    assert not workspace.exists()  # cleaned up without --keep


def test_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hybridai",
            "demo",
            "--duration",
            "60",
            "--keep",
            "--workspace",
            str(workspace),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while len(_fleet_processes(workspace)) < 4 and time.monotonic() < deadline:
        assert demo.poll() is None, "the demo exited before its fleet started"
        time.sleep(0.5)
    started = _fleet_processes(workspace)
    assert sum(" cloud serve " in p for p in started) == 1, started
    assert sum(" edge run " in p for p in started) == 3, started

    os.kill(demo.pid, signal.SIGINT)
    assert demo.wait(timeout=60) == 130
    assert _fleet_processes(workspace) == []
