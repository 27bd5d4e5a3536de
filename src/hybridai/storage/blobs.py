"""Blob store for model artifacts: a small interface, chosen by URL.

Backends implement only put / get / exists; digests and verification live once, in the
services that use them. ``put`` is atomic: a reader sees the old blob or the new one, never a
torn write, even if the process dies mid-write. A local folder is the embedded default; an
``s3://BUCKET/PREFIX`` URL opens ``S3BlobStore`` (``storage.s3_blobs``, the ``[s3]`` extra).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from hybridai.storage.location import S3Options, parse_location


@runtime_checkable
class BlobStore(Protocol):
    """Keys are ``/``-separated relative paths such as ``models/pm/3/edge.onnx``."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically, replacing any previous blob."""
        ...

    def get(self, key: str) -> bytes:
        """Return the blob's bytes; raise ``KeyError`` when there is none."""
        ...

    def exists(self, key: str) -> bool: ...


class BlobStorageError(OSError):
    """The blob store failed or refused access; the message says where and why."""


def check_key(key: str) -> list[str]:
    """The key's parts; a key that could escape the store's root is refused."""
    parts = key.split("/")
    if "\\" in key or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"invalid blob key {key!r}: use a relative path like 'a/b/c.onnx'")
    return parts


class LocalBlobStore:
    """Blobs as files under ``root``: the embedded default."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key))

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise KeyError(key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()


def open_blob_store(url: str, s3: S3Options | None = None) -> BlobStore:
    """Open the store for a plain path, ``file:///PATH`` or ``s3://BUCKET/PREFIX``.

    ``s3`` says how to reach an S3 store (endpoint, credentials, region); the bucket must exist.
    """
    location = parse_location(url, what="blob store", settings="HYBRIDAI_CLOUD_BLOB_S3_* settings")
    if location.path is not None:
        return LocalBlobStore(Path(location.path))
    from hybridai.storage.s3_blobs import S3BlobStore  # boto3 is imported only when needed

    return S3BlobStore(location, s3 or S3Options())
