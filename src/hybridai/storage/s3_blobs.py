"""Blobs as objects in an S3 bucket under a prefix: the production backend (``[s3]`` extra).

One PUT per blob: S3 makes an object visible whole or not at all, so ``put`` is atomic as the
interface promises. Works with AWS S3 and S3-compatible stores (MinIO, SeaweedFS, R2): path-style
addressing when an endpoint is given, and checksums only where S3 requires them (the newer
default CRC headers are refused by some compatible stores). Credentials come from
``S3Options`` or the AWS credential chain, and never appear in a ``repr`` or an error.
"""

from __future__ import annotations

from typing import Any

from hybridai.storage.blobs import BlobStorageError, check_key
from hybridai.storage.location import Location, S3Options

SETTINGS_HINT = (
    "check the blob store URL, that the bucket exists, and HYBRIDAI_CLOUD_BLOB_S3_ENDPOINT_URL, "
    "_ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _REGION and _ALLOW_HTTP"
)
_MISSING = {"404", "NoSuchKey", "NotFound"}


class S3BlobStore:
    """Blobs under ``s3://BUCKET/PREFIX``; the bucket must exist (the store never creates one)."""

    def __init__(self, location: Location, s3: S3Options) -> None:
        if location.bucket is None:
            raise ValueError("an S3 blob store needs an s3://BUCKET/PREFIX location")
        endpoint = s3.endpoint_url
        if endpoint and endpoint.lower().startswith("http://") and not s3.allow_http:
            raise ValueError(
                "the blob store's S3 endpoint is plain http://: use https://, or set "
                "HYBRIDAI_CLOUD_BLOB_S3_ALLOW_HTTP=true for a local test store"
            )
        if (s3.access_key_id is None) != (s3.secret_access_key is None):
            raise ValueError(
                "the blob store's S3 credentials are half set: give both "
                "HYBRIDAI_CLOUD_BLOB_S3_ACCESS_KEY_ID and _SECRET_ACCESS_KEY, or neither (the "
                "AWS credential chain then applies)"
            )
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ValueError(
                "an s3:// blob store needs the [s3] extra: pip install 'hybridai[s3]'"
            ) from None
        self.location = location
        self._bucket = location.bucket
        config = Config(
            retries={"max_attempts": 5, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint else {},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
            region_name=s3.region,
            config=config,
        )

    def __repr__(self) -> str:
        return f"S3BlobStore({self.location.root!r})"

    def put(self, key: str, data: bytes) -> None:
        self._call("writing", key, "put_object", Body=data)

    def get(self, key: str) -> bytes:
        try:
            answer = self._call("reading", key, "get_object")
        except _Missing:
            raise KeyError(key) from None
        body: bytes = answer["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        try:
            self._call("looking up", key, "head_object")
        except _Missing:
            return False
        return True

    def _call(self, doing: str, key: str, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        check_key(key)
        try:
            method = getattr(self._client, operation)
            return method(Bucket=self._bucket, Key=self.location.key(key), **kwargs)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _MISSING and operation != "put_object":
                raise _Missing from None
            detail = f"{code or 'error'} (HTTP {status})" if status else code or "error"
            raise self._error(doing, key, detail) from None
        except BotoCoreError as error:
            raise self._error(doing, key, f"{type(error).__name__}: {error}"[:300]) from None

    def _error(self, doing: str, key: str, detail: str) -> BlobStorageError:
        return BlobStorageError(
            f"the blob store at {self.location.root} failed while {doing} {key!r}: {detail}: "
            f"{SETTINGS_HINT}"
        )


class _Missing(Exception):
    """No object under the key (inside this module only: ``get`` answers ``KeyError``)."""
