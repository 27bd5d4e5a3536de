"""Store URLs, parsed once: the blob store and the lake read a URL the same way.

``storage.location`` turns ``PATH``, ``file:///PATH`` and ``s3://BUCKET/PREFIX`` into a
``Location``; a bad URL is refused with the same reason whichever store it names, and never
with a secret in the message.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hybridai.cloud.data.lake_storage import LakeLocation
from hybridai.cloud.settings import CloudSettings
from hybridai.storage.blobs import LocalBlobStore, open_blob_store
from hybridai.storage.location import Location, S3Options, parse_location
from hybridai.storage.s3_blobs import S3BlobStore

SECRET = "wJalrXUtnFEMI-K7MDENG"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/srv/blobs", Location(path="/srv/blobs")),
        ("/srv/blobs/", Location(path="/srv/blobs")),
        ("relative/dir", Location(path="relative/dir")),
        ("C:\\data\\blobs", Location(path="C:\\data\\blobs")),  # a drive, not a scheme
        ("file:///srv/my%20blobs", Location(path="/srv/my blobs")),
        ("file://localhost/srv/blobs/", Location(path="/srv/blobs")),
        ("file:///", Location(path="/")),
        ("s3://my-bucket", Location(bucket="my-bucket")),
        ("S3://my-bucket/", Location(bucket="my-bucket")),
        ("s3://my.bucket-1/plant/a/", Location(bucket="my.bucket-1", prefix="plant/a")),
    ],
)
def test_urls_parse_to_a_location(url: str, expected: Location) -> None:
    assert parse_location(url) == expected


def test_a_location_names_its_root_and_keys() -> None:
    s3 = parse_location("s3://my-bucket/plant/a")
    top = parse_location("s3://my-bucket")
    local = parse_location("/srv/blobs")

    assert (s3.root, s3.key("m/1.onnx"), s3.is_local) == (
        "s3://my-bucket/plant/a",
        "plant/a/m/1.onnx",
        False,
    )
    assert (top.root, top.key("m/1.onnx")) == ("s3://my-bucket", "m/1.onnx")
    assert (local.root, local.is_local) == ("/srv/blobs", True)


BAD_URLS = [
    (f"s3://AKIA1:{SECRET}@my-bucket/x", "never in the URL"),
    ("s3://my-bucket/x?region=eu", "never in the URL"),
    ("s3://my-bucket/x#frag", "never in the URL"),
    ("s3://My_Bucket/x", "not a valid bucket name"),
    ("s3:///x", "not a valid bucket name"),
    ("s3://my-bucket:9000/x", "not a valid bucket name"),
    ("s3://my-bucket/a//b", "plain folder names"),
    ("s3://my-bucket/../b", "plain folder names"),
    ("gs://my-bucket/x", "unsupported"),
    (f"https://u:{SECRET}@host/x", "unsupported"),
    ("file://host/x", "local path"),
    ("", "empty"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS)
def test_the_blob_store_and_the_lake_refuse_a_bad_url_alike(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as blob_error:
        open_blob_store(url)
    with pytest.raises(ValueError, match=message) as lake_error:
        LakeLocation(url)

    blob_text, lake_text = str(blob_error.value), str(lake_error.value)
    assert "blob store" in blob_text and "lake" in lake_text
    assert blob_text.replace("blob store", "STORE").replace("_BLOB_", "_X_") == lake_text.replace(
        "lake", "STORE"
    ).replace("_LAKE_", "_X_")
    assert SECRET not in blob_text and SECRET not in lake_text


def test_local_urls_open_a_folder(tmp_path: Path) -> None:
    for url in (str(tmp_path / "b"), f"file://{tmp_path / 'b'}", f"file://{tmp_path / 'b'}/"):
        store = open_blob_store(url)
        assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "b"


def test_an_s3_url_opens_the_s3_store_without_showing_the_secret() -> None:
    keys = S3Options(access_key_id="AKIA1", secret_access_key=SECRET, region="eu-west-1")

    store = open_blob_store("s3://my-bucket/models", keys)

    assert isinstance(store, S3BlobStore)
    assert repr(store) == "S3BlobStore('s3://my-bucket/models')"


def test_without_boto3_an_s3_url_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without [s3] has

    with pytest.raises(ValueError, match=r"pip install 'hybridai\[s3\]'"):
        open_blob_store("s3://my-bucket/models")


@pytest.mark.parametrize(
    "half", [S3Options(secret_access_key=SECRET), S3Options(access_key_id="AKIA1")]
)
def test_half_set_credentials_are_refused(half: S3Options) -> None:
    with pytest.raises(ValueError, match="half set") as raised:
        open_blob_store("s3://my-bucket", half)

    assert SECRET not in str(raised.value)


def test_a_plain_http_endpoint_needs_allow_http() -> None:
    plain = S3Options(endpoint_url="http://127.0.0.1:8333", secret_access_key=SECRET)

    with pytest.raises(ValueError, match="HYBRIDAI_CLOUD_BLOB_S3_ALLOW_HTTP") as raised:
        open_blob_store("s3://my-bucket", plain)

    assert SECRET not in str(raised.value)
    allowed = S3Options(endpoint_url="http://127.0.0.1:8333", allow_http=True)
    assert isinstance(open_blob_store("s3://my-bucket", allowed), S3BlobStore)


def test_the_blob_store_uses_the_lake_s3_settings_unless_given_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lake = {
        "LAKE_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
        "LAKE_S3_ACCESS_KEY_ID": "AKIA1",
        "LAKE_S3_SECRET_ACCESS_KEY": SECRET,
        "LAKE_S3_REGION": "eu-west-1",
        "LAKE_S3_ALLOW_HTTP": "true",
    }
    for name, value in lake.items():
        monkeypatch.setenv(f"HYBRIDAI_CLOUD_{name}", value)

    shared = CloudSettings().blob_s3()
    monkeypatch.setenv("HYBRIDAI_CLOUD_BLOB_S3_ENDPOINT_URL", "https://s3.example.com")
    monkeypatch.setenv("HYBRIDAI_CLOUD_BLOB_S3_SECRET_ACCESS_KEY", "other-" + SECRET)
    monkeypatch.setenv("HYBRIDAI_CLOUD_BLOB_S3_ALLOW_HTTP", "false")
    own = CloudSettings()

    assert shared == CloudSettings().lake_s3() == own.lake_s3()
    assert own.blob_s3() == S3Options(
        endpoint_url="https://s3.example.com",
        access_key_id="AKIA1",
        secret_access_key="other-" + SECRET,
        region="eu-west-1",
        allow_http=False,
    )
    assert SECRET not in repr(own) and SECRET not in str(own.model_dump())
