"""The lake on a real S3-compatible server: what only S3 has (see ``tests/_s3.py``).

Everything the lake promises on any backend is in ``test_lake.py``, run on a local folder and
on S3 alike; here: credentials and buckets, several writer processes racing on one table
(S3 conditional writes), and the cloud configured for an s3:// lake by environment.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from _lake_writers import batch, writer_process
from fastapi.testclient import TestClient

from _s3 import ACCESS_KEY, BUCKET, SECRET_KEY, S3Server
from hybridai.cloud.app import create_app
from hybridai.cloud.context import open_cloud
from hybridai.cloud.data.lake import Lake
from hybridai.cloud.data.lake_storage import LakeStorageError, S3Options
from hybridai.cloud.devices import fleet
from hybridai.cloud.settings import CloudSettings
from hybridai.link import pki
from hybridai.protocol import sync
from hybridai.protocol.fleet import Capabilities, EnrollRequest


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
        lake.streams()


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
        sync.STREAM_HEADER: "telemetry",
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
