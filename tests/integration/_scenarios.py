"""Helpers for the use-case tests: a site's records committed to a real lake as sync does."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa

from hybridai.cloud.data.lake import Lake
from hybridai.governance.policies import redact
from hybridai.protocol.policy import DataPolicy

SITE_KEY = b"k" * 32


def commit_site(
    lake: Lake,
    device: str,
    site: str,
    records: dict[str, list[dict[str, Any]]],
    policies: dict[str, dict[str, Any]],
) -> None:
    """Each stream's records as one edge batch, passed through its data policy first."""
    for stream, rows in records.items():
        spec = policies.get(stream)
        policy = None if spec is None else DataPolicy(stream=stream, **spec)
        out = []
        for i, record in enumerate(rows):
            day = dt.datetime.fromtimestamp(record["ts"], dt.UTC).strftime("%Y-%m-%d")
            kept = redact(policy, SITE_KEY, record)
            out.append(
                {**kept, "record_id": f"{device}:{stream}:{i}", "device_id": device, "site": site}
                | {"date": day}
            )
        lake.commit_batch(stream, device, 1 if stream < "m" else 2, pa.Table.from_pylist(out))


def demo_json(scenario: str, workspace: Path, timeout_s: float = 300) -> dict[str, Any]:
    """``hybridai demo --scenario NAME --json`` as a user runs it; its summary."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybridai",
            "demo",
            "--scenario",
            scenario,
            "--json",
            "--workspace",
            str(workspace),
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary
