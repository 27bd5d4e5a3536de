"""Starts a local fleet as separate processes on loopback and stops every one of them.

Children run in their own sessions so that a terminal's Ctrl-C reaches only the launcher,
which then stops them in order (SIGTERM, a grace period, then SIGKILL). Their logs go to files
in the workspace, shown when a child fails to come up.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from hybridai.link.tls import client_context


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    ca_file: Path | None = None  # for https children: the CA their certificate chains to

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ChildFailed(RuntimeError):
    pass


def _live(child: Child) -> bool:
    """The readiness probe; over https it waits for the CA and verifies the child against it."""
    verify: ssl.SSLContext | bool = True
    if child.ca_file is not None:
        if not child.ca_file.exists():  # the cloud creates its PKI as it starts
            return False
        verify = client_context(child.ca_file)
    return httpx.get(f"{child.url}/v2/health/live", timeout=1, verify=verify).status_code == 200


class Launcher:
    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.children: list[Child] = []

    def spawn(
        self,
        name: str,
        args: list[str],
        port: int,
        env: dict[str, str],
        ca_file: Path | None = None,
    ) -> Child:
        """Start ``hybridai ARGS``; with ``ca_file`` it serves https, verified against that CA."""
        log = self.workspace / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "hybridai", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env},
                cwd=self.workspace,
                start_new_session=True,
            )
        scheme = "https" if ca_file is not None else "http"
        child = Child(name, process, f"{scheme}://127.0.0.1:{port}", log, ca_file)
        self.children.append(child)
        return child

    def wait_ready(self, child: Child, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not child.alive():
                raise ChildFailed(f"{child.name} exited at start:\n{child.log_tail()}")
            try:
                if _live(child):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ChildFailed(f"{child.name} not ready after {timeout_s:.0f}s:\n{child.log_tail()}")

    def stop(self, child: Child, grace_s: float = 8.0) -> None:
        if child.alive():
            child.process.send_signal(signal.SIGTERM)
            try:
                child.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()

    def kill(self, child: Child) -> None:
        """Kill -9: no chance to flush or say goodbye."""
        if child.alive():
            child.process.kill()
            child.process.wait()

    def stop_all(self) -> None:
        # Edges first, so their last reports and batches can still reach the cloud.
        for child in reversed(self.children):
            self.stop(child)
