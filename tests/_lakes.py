"""Lakes on each backend for the lake suites: a local folder or a prefix on the test S3 server.

A test asks ``lake_factory`` (``tests/integration/conftest.py``) for a lake and never learns
which backend it got; where it must look under the lake (which data files hold a value, a file
another replica left), it reads and writes the raw objects through the factory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridai.cloud.data.lake import Lake
from hybridai.storage.location import S3Options, parse_location


class LakeFactory:
    """Opens lakes on one backend: a fresh root each time, or ``root`` again (a new process)."""

    def __init__(self, backend: str, fresh_root: Callable[[], str], s3: S3Options | None) -> None:
        self.backend = backend
        self._fresh_root = fresh_root
        self.s3 = s3

    def __repr__(self) -> str:
        return f"LakeFactory({self.backend!r})"

    def __call__(self, root: str | None = None) -> Lake:
        return Lake(root or self._fresh_root(), self.s3)

    def objects(self, root: str) -> dict[str, bytes]:
        """Every object under ``root`` by its path relative to it (``telemetry/_delta_log/...``)."""
        location = parse_location(root)
        if location.path is not None:
            base = Path(location.path)
            return {
                p.relative_to(base).as_posix(): p.read_bytes()
                for p in base.rglob("*")
                if p.is_file()
            }
        client, bucket = self._client(), location.bucket
        found: dict[str, bytes] = {}
        prefix = location.key("")
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                found[item["Key"].removeprefix(prefix)] = body
        return found

    def put_object(self, root: str, key: str, data: bytes) -> None:
        """Write ``data`` under ``root`` behind the lake's back, as another writer would."""
        location = parse_location(root)
        if location.path is not None:
            path = Path(location.path, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return
        self._client().put_object(Bucket=location.bucket, Key=location.key(key), Body=data)

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

        s3 = self.s3 or S3Options()
        return boto3.session.Session().client(
            "s3",
            endpoint_url=s3.endpoint_url,
            aws_access_key_id=s3.access_key_id,
            aws_secret_access_key=s3.secret_access_key,
            region_name=s3.region,
            config=Config(
                s3={"addressing_style": "path"}, request_checksum_calculation="when_required"
            ),
        )


def local_lakes(folder: Path) -> LakeFactory:
    counter = itertools.count()
    return LakeFactory("local", lambda: str(folder / f"lake-{next(counter)}"), None)
