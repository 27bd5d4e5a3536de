"""One edge agent as a real process with no cloud reachable: the lightest ingest harness.

An edge ingests, stores and serves its cached models without a cloud (it keeps trying to
enroll in the background), so SDK tests, MQTT fault tests and the ingest benchmark need only
this process, not a whole ``LocalFleet``. With no cloud it never receives its site's keys, so
it runs as a lab bench: ``HYBRIDAI_EDGE_LAN_AUTH=open`` (pass ``env`` to say otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from hybridai.demo.launcher import Child, Launcher, free_port

UNREACHABLE_CLOUD = "https://127.0.0.1:9"  # the discard port: refused at once


class LoneEdge:
    """Start, kill -9 and restart (same port, same data) one edge agent process."""

    def __init__(self, workspace: Path, env: dict[str, str] | None = None) -> None:
        workspace.mkdir(parents=True, exist_ok=True)
        self.workspace = workspace
        self.launcher = Launcher(workspace)
        self.port = free_port()
        # A token, so the agent starts (an edge with neither a certificate nor a token is
        # refused at start); the unreachable cloud never gets to judge it.
        self.env = {
            "HYBRIDAI_EDGE_LAN_AUTH": "open",
            "HYBRIDAI_EDGE_ENROLL_TOKEN": "lone-edge-never-enrolls",
            **(env or {}),
        }
        self.data_dir = workspace / "edge"
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Child:
        args = ["edge", "run", "--cloud", UNREACHABLE_CLOUD, "--device-id", "edge-1"]
        args += ["--data-dir", str(self.data_dir), "--port", str(self.port)]
        self.child = self.launcher.spawn("edge", args, self.port, self.env)
        self.launcher.wait_ready(self.child)
        return self.child

    def kill(self) -> None:
        """Kill -9: nothing flushed, no goodbye to the broker."""
        if self.child is not None:
            self.launcher.kill(self.child)

    def stop(self) -> None:
        if self.child is not None:
            self.launcher.stop(self.child)

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = httpx.get(f"{self.url}/api/v1/status", timeout=10).json()
        return report

    def __enter__(self) -> LoneEdge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.launcher.stop_all()
