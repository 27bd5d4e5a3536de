"""Storage backends, each an interface with an embedded default and a production backend.

Metadata lives in SQLAlchemy (SQLite or PostgreSQL, schema managed by Alembic); blobs live in
a blob store chosen by URL (a local folder, or S3 with the ``[s3]`` extra); ``location``
parses the URLs of every store that takes one.

Names load on first use (PEP 562): a process that only parses a location (the edge, the CLI)
does not pay for SQLAlchemy and Alembic, some 30 MB of memory.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hybridai.storage.blobs import (
        BlobStorageError,
        BlobStore,
        LocalBlobStore,
        open_blob_store,
    )
    from hybridai.storage.location import Location, S3Options, parse_location
    from hybridai.storage.metadata import create_engine_for, migrate, session_factory

_HOME = {
    "BlobStorageError": "blobs",
    "BlobStore": "blobs",
    "LocalBlobStore": "blobs",
    "open_blob_store": "blobs",
    "Location": "location",
    "S3Options": "location",
    "parse_location": "location",
    "create_engine_for": "metadata",
    "migrate": "metadata",
    "session_factory": "metadata",
}

__all__ = [
    "BlobStorageError",
    "BlobStore",
    "LocalBlobStore",
    "Location",
    "S3Options",
    "create_engine_for",
    "migrate",
    "open_blob_store",
    "parse_location",
    "session_factory",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
