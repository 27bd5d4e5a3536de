"""Lake locations by URL: parsing, the options delta-rs gets, and secrets kept out of sight."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.data.lake_storage import LakeLocation, LakeStorageError, S3Options
from hybridai.cloud.settings import CloudSettings

SECRET = "wJalrXUtnFEMI-K7MDENG"


def test_an_s3_url_names_bucket_and_prefix_and_carries_the_options() -> None:
    s3 = S3Options(
        endpoint_url="http://127.0.0.1:8333",
        access_key_id="AKIA1",
        secret_access_key=SECRET,
        region="eu-west-1",
        allow_http=True,
    )

    location = LakeLocation("s3://my-lake/plant/tables/", s3)

    assert location.root == "s3://my-lake/plant/tables"
    assert location.uri("telemetry") == "s3://my-lake/plant/tables/telemetry"
    assert not location.is_local
    assert location.storage_options == {
        "AWS_CONDITIONAL_PUT": "etag",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
        "AWS_ACCESS_KEY_ID": "AKIA1",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
    }
    assert SECRET not in repr(location) and SECRET not in repr(s3)


def test_unset_s3_options_are_left_to_the_aws_defaults() -> None:
    location = LakeLocation("s3://my-lake")

    assert location.root == "s3://my-lake"
    assert location.uri("t") == "s3://my-lake/t"
    assert location.storage_options == {"AWS_CONDITIONAL_PUT": "etag"}


def test_local_paths_and_file_urls_are_folders(tmp_path: Path) -> None:
    plain = LakeLocation(str(tmp_path / "lake") + "/")
    url = LakeLocation(f"file://{tmp_path / 'lake'}")

    assert plain.root == url.root == str(tmp_path / "lake")
    assert plain.is_local and plain.storage_options is None
    assert url.uri("t") == str(tmp_path / "lake" / "t")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"s3://AKIA1:{SECRET}@my-lake/x", "never in the URL"),
        ("s3://my-lake/x?region=eu", "never in the URL"),
        ("s3://My_Lake/x", "not a valid bucket name"),
        ("s3:///x", "not a valid bucket name"),
        ("s3://my-lake/a//b", "plain folder names"),
        ("s3://my-lake/../b", "plain folder names"),
        ("gs://my-lake/x", "unsupported lake URL"),
        ("file://host/x", "local path"),
    ],
)
def test_bad_lake_urls_are_refused_with_a_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        LakeLocation(url)

    assert SECRET not in str(raised.value)


def test_a_storage_error_reads_as_a_sentence() -> None:
    raw = OSError(
        "Kernel error -> The operation lacked the necessary privileges\n"
        "   \x1b[31m↳\x1b[0m Error performing GET http://s3/lake/t/_delta_log - non-2xx\n"
        "    \x1b[31m↳\x1b[0m 403 Forbidden\n"
        "<Error><Code>SignatureDoesNotMatch</Code><Message>...</Message></Error>"
    )

    error = LakeLocation("s3://my-lake/p").storage_error("opening stream 't'", raw)

    assert isinstance(error, LakeStorageError) and isinstance(error, OSError)
    text = str(error)
    assert text.startswith("the lake at s3://my-lake/p failed while opening stream 't': ")
    assert "403 Forbidden" in text and "SignatureDoesNotMatch" in text
    assert "\x1b" not in text and "HYBRIDAI_CLOUD_LAKE_S3_ENDPOINT_URL" in text


def test_a_lake_shows_its_root_only() -> None:
    lake = Lake("s3://my-lake/p", S3Options(secret_access_key=SECRET))

    assert repr(lake) == "Lake('s3://my-lake/p')" and lake.root == "s3://my-lake/p"


def test_settings_read_the_s3_lake_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "LAKE_URL": "s3://my-lake/p",
        "LAKE_S3_ENDPOINT_URL": "http://127.0.0.1:8333",
        "LAKE_S3_ACCESS_KEY_ID": "AKIA1",
        "LAKE_S3_SECRET_ACCESS_KEY": SECRET,
        "LAKE_S3_REGION": "eu-west-1",
        "LAKE_S3_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(f"HYBRIDAI_CLOUD_{name}", value)

    settings = CloudSettings()

    assert settings.resolved_lake_url() == "s3://my-lake/p"
    assert settings.lake_s3() == S3Options(
        endpoint_url="http://127.0.0.1:8333",
        access_key_id="AKIA1",
        secret_access_key=SECRET,
        region="eu-west-1",
        allow_http=True,
    )
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
