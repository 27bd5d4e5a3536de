"""The blob store, one suite on every backend: a local folder (``file://``) and real S3.

``blob_url`` opens each test's store by URL, as the cloud does, on a fresh folder or a fresh
prefix of the session's ``weed`` S3 server (``tests/_s3.py``). What only S3 has (credentials,
buckets, the cloud configured by environment) follows the shared suite.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from _s3 import BUCKET, SECRET_KEY, S3Server
from hybridai.cloud.app import create_app
from hybridai.cloud.context import open_cloud
from hybridai.cloud.models import registry
from hybridai.cloud.settings import CloudSettings
from hybridai.storage.blobs import BlobStorageError, BlobStore, LocalBlobStore, open_blob_store
from hybridai.storage.location import S3Options
from hybridai.storage.s3_blobs import S3BlobStore


class Backend:
    """Opens the store at one URL on one backend, as often as a test likes (a new process)."""

    def __init__(self, url: str, s3: S3Options | None) -> None:
        self.url = url
        self.s3 = s3

    def open(self) -> BlobStore:
        return open_blob_store(self.url, self.s3)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        return Backend(f"file://{tmp_path / 'blobs'}", None)
    server: S3Server = request.getfixturevalue("s3")
    return Backend(server.root(), server.options)


@pytest.fixture
def blobs(backend: Backend) -> BlobStore:
    return backend.open()


def test_the_url_picks_the_backend(backend: Backend, blobs: BlobStore) -> None:
    expected = LocalBlobStore if backend.url.startswith("file://") else S3BlobStore
    assert type(blobs) is expected
    assert isinstance(blobs, BlobStore)


def test_a_blob_reads_back_as_written(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 4096  # every byte value, 1 MiB

    blobs.put("models/pm/3/edge.onnx", data)

    assert blobs.get("models/pm/3/edge.onnx") == data
    assert blobs.exists("models/pm/3/edge.onnx")
    assert not blobs.exists("models/pm/3/cloud.onnx")
    assert not blobs.exists("models/pm/3")  # a folder, not a blob


def test_put_replaces_a_blob(blobs: BlobStore) -> None:
    blobs.put("a/b.bin", b"first version, longer")
    blobs.put("a/b.bin", b"second")

    assert blobs.get("a/b.bin") == b"second"


def test_an_empty_blob_is_a_blob(blobs: BlobStore) -> None:
    blobs.put("empty", b"")

    assert blobs.exists("empty") and blobs.get("empty") == b""


def test_a_missing_blob_is_a_key_error(blobs: BlobStore) -> None:
    blobs.put("models/dir/x.onnx", b"x")

    with pytest.raises(KeyError, match=r"models/none/1/edge\.onnx"):
        blobs.get("models/none/1/edge.onnx")
    with pytest.raises(KeyError):
        blobs.get("models/dir")  # a folder is not a blob

    assert not blobs.exists("models/none/1/edge.onnx")


def test_another_store_at_the_same_url_sees_the_blobs(backend: Backend) -> None:
    backend.open().put("shared/x", b"written by one replica")

    assert backend.open().get("shared/x") == b"written by one replica"


@pytest.mark.parametrize(
    "key", ["", "/abs", "a//b", "../up", "a/../b", "./a", "a/./b", "a/..", "a\\b", "a/"]
)
def test_keys_that_could_escape_are_refused(blobs: BlobStore, key: str) -> None:
    for attempt in (lambda: blobs.put(key, b"x"), lambda: blobs.get(key)):
        with pytest.raises(ValueError, match="invalid blob key"):
            attempt()
    with pytest.raises(ValueError, match="invalid blob key"):
        blobs.exists(key)


def test_a_reader_never_sees_a_torn_write(blobs: BlobStore) -> None:
    versions = [bytes([n]) * 300_000 for n in range(2)]
    blobs.put("hot", versions[0])
    seen: list[bytes] = []
    done = threading.Event()

    def write() -> None:
        for i in range(12):
            blobs.put("hot", versions[i % 2])
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    while not done.is_set():
        seen.append(blobs.get("hot"))
    writer.join()

    assert seen and all(blob in versions for blob in seen)


# -- a local folder only -------------------------------------------------------------------


def test_a_local_put_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put("models/pm/1/edge.onnx", b"one")
    store.put("models/pm/1/edge.onnx", b"two")
    with pytest.raises(TypeError):
        store.put("a/b.bin", "not bytes")  # type: ignore[arg-type]

    assert [p.name for p in (tmp_path / "blobs/models/pm/1").iterdir()] == ["edge.onnx"]
    assert list((tmp_path / "blobs/a").iterdir()) == []  # the failed write left nothing


# -- S3 only ------------------------------------------------------------------------------


def test_wrong_credentials_fail_clearly_without_showing_the_secret(s3: S3Server) -> None:
    wrong = replace(s3.options, secret_access_key="not-the-secret")
    blobs = open_blob_store(f"s3://{BUCKET}/denied", wrong)

    with pytest.raises(BlobStorageError) as raised:
        blobs.put("models/pm/1/edge.onnx", b"x")

    message = str(raised.value)
    assert message.startswith("the blob store at s3://lake/denied failed while writing")
    assert "SignatureDoesNotMatch" in message and "403" in message
    assert "HYBRIDAI_CLOUD_BLOB_S3_ENDPOINT_URL" in message
    assert "not-the-secret" not in message and "not-the-secret" not in repr(blobs)


def test_a_missing_bucket_is_named(s3: S3Server) -> None:
    # Only read: SeaweedFS (unlike AWS S3) makes a missing bucket on a write by an admin.
    blobs = open_blob_store("s3://no-such-blob-bucket/x", s3.options)

    with pytest.raises(BlobStorageError, match="NoSuchBucket"):
        blobs.get("a")


def test_an_unreachable_endpoint_is_a_storage_error(s3: S3Server) -> None:
    gone = replace(s3.options, endpoint_url="http://127.0.0.1:9")  # discard: nothing listens
    blobs = open_blob_store(s3.root(), gone)

    with pytest.raises(BlobStorageError, match=r"failed while reading 'a'.*EndpointConnection"):
        blobs.get("a")


def test_the_cloud_keeps_model_artifacts_in_an_s3_blob_store(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, classifier_onnx: bytes
) -> None:
    """Only BLOB_URL names S3: the connection comes from the LAKE_S3_* settings."""
    root = s3.root()
    assert s3.options.secret_access_key is not None
    for name, value in {
        "BLOB_URL": root,
        "LAKE_S3_ENDPOINT_URL": s3.endpoint,
        "LAKE_S3_ACCESS_KEY_ID": s3.options.access_key_id or "",
        "LAKE_S3_SECRET_ACCESS_KEY": s3.options.secret_access_key,
        "LAKE_S3_REGION": "us-east-1",
        "LAKE_S3_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(f"HYBRIDAI_CLOUD_{name}", value)
    cloud = open_cloud(CloudSettings(data_dir=tmp_path / "cloud"))
    try:
        with cloud.session() as session:
            info = registry.register_version(
                session, cloud.blobs, "pm", {"edge": classifier_onnx}, {}, {}, "t", time.time()
            )
        with cloud.session() as session:
            read = registry.read_artifact(session, cloud.blobs, "pm", info.version, "edge")
    finally:
        cloud.close()

    assert repr(cloud.blobs) == f"S3BlobStore({root!r})" and SECRET_KEY not in repr(cloud.blobs)
    assert read == classifier_onnx
    assert not (tmp_path / "cloud" / "blobs").exists()  # nothing went to the local default
    stored = open_blob_store(root, s3.options)
    assert stored.get(registry.blob_key("pm", info.version, "edge")) == classifier_onnx


def test_the_api_answers_503_when_the_blob_store_refuses(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, classifier_onnx: bytes
) -> None:
    """BLOB_S3_* alone configure the store; a refusal is the operator's to fix, not a 500."""
    for name, value in {
        "BLOB_URL": s3.root(),
        "BLOB_S3_ENDPOINT_URL": s3.endpoint,
        "BLOB_S3_ACCESS_KEY_ID": s3.options.access_key_id or "",
        "BLOB_S3_SECRET_ACCESS_KEY": "rotated-away",
        "BLOB_S3_REGION": "us-east-1",
        "BLOB_S3_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(f"HYBRIDAI_CLOUD_{name}", value)
    cloud = open_cloud(CloudSettings(data_dir=tmp_path / "cloud"))
    admin = {"Authorization": f"Bearer {cloud.settings.admin_token_path.read_text().strip()}"}

    with TestClient(create_app(cloud)) as api:
        refused = api.post(
            "/api/v1/models/pm/versions", files={"edge": ("m.onnx", classifier_onnx)}, headers=admin
        )
        listed = api.get("/api/v1/models", headers=admin)

    assert (refused.status_code, refused.json()["code"]) == (503, "upstream_unavailable")
    assert "SignatureDoesNotMatch" in refused.json()["error"]
    assert "HYBRIDAI_CLOUD_BLOB_S3_ENDPOINT_URL" in refused.json()["error"]
    assert "rotated-away" not in refused.text
    assert listed.json() == []  # nothing was registered: the blob came first
