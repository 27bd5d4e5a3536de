"""Blob store for model artifacts: a small interface, chosen by URL.

Backends implement only put / get / exists; digests and verification live once, in the
services that use them. ``put`` is atomic: a reader sees the old blob or the new one, never a
torn write, even if the process dies mid-write.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit


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


class LocalBlobStore:
    """Blobs as files under ``root``: the embedded default."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if "\\" in key or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"invalid blob key {key!r}: use a relative path like 'a/b/c.onnx'")
        return self.root.joinpath(*parts)

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


def open_blob_store(url: str) -> BlobStore:
    """Open the store for ``file:///PATH``, a plain path, or ``s3://`` (``[s3]`` extra)."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "s3":
        raise NotImplementedError(
            f"blob store {url!r}: S3 support comes with the [s3] extra "
            "(pip install 'hybridai[s3]'); use a local path or file:///PATH meanwhile"
        )
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"blob store {url!r}: file URLs must name a local path")
        return LocalBlobStore(Path(unquote(parts.path)))
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ValueError(
            f"unsupported blob store URL scheme {scheme!r}: use a path, file:///PATH or s3://"
        )
    return LocalBlobStore(Path(url))
