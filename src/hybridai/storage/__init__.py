"""Storage backends, each an interface with an embedded default and a production backend.

Metadata lives in SQLAlchemy (SQLite or PostgreSQL, schema managed by Alembic); blobs live in
a blob store chosen by URL (a local folder, or S3 with the ``[s3]`` extra); ``location``
parses the URLs of every store that takes one.
"""

from __future__ import annotations

from hybridai.storage.blobs import BlobStorageError, BlobStore, LocalBlobStore, open_blob_store
from hybridai.storage.location import Location, S3Options, parse_location
from hybridai.storage.metadata import create_engine_for, migrate, session_factory

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
