"""Where the lake lives: a local folder or an S3 bucket and prefix, chosen by URL.

delta-rs speaks S3 itself, so an S3 lake needs no client of its own: the location hands delta-rs
the endpoint, credentials and region as storage options, and reads go through delta-rs's object
store too (``DeltaTable.to_pyarrow_dataset``). Commits rely on S3 conditional writes
(``If-None-Match: *``, enforced by AWS S3, MinIO, SeaweedFS and R2): two writers can never both
create the same log entry, so several cloud replicas may share one lake without a lock service.

Credentials never appear in the URL, a ``repr`` or an error message: they come from settings
(or, when those are unset, from the standard ``AWS_*`` variables and credential chain that
delta-rs reads itself).
"""

from __future__ import annotations

import os
import re

from hybridai.storage.location import S3Options, parse_location

__all__ = ["S3_SETTINGS_HINT", "LakeLocation", "LakeStorageError", "S3Options"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_S3_CODE = re.compile(r"<Code>([^<]+)</Code>")
_HTTP_STATUS = re.compile(r"\b([45]\d\d [A-Z][A-Za-z ]+)")
S3_SETTINGS_HINT = (
    "check the lake URL, that the bucket exists, and HYBRIDAI_CLOUD_LAKE_S3_ENDPOINT_URL, "
    "_ACCESS_KEY_ID, _SECRET_ACCESS_KEY, _REGION and _ALLOW_HTTP"
)


class LakeStorageError(OSError):
    """The lake's storage failed or refused access; the message says where and why."""


class LakeLocation:
    """The lake's root: a local folder (``PATH`` or ``file:///PATH``) or ``s3://BUCKET/PREFIX``.

    The URL is parsed by ``storage.location`` (as the blob store's is).
    """

    def __init__(self, url: str, s3: S3Options | None = None) -> None:
        location = parse_location(url, what="lake", settings="HYBRIDAI_CLOUD_LAKE_S3_* settings")
        self._root = location.root
        self._options: dict[str, str] | None = (
            None if location.is_local else (s3 or S3Options()).storage_options()
        )

    def __repr__(self) -> str:
        return f"LakeLocation({self._root!r})"

    @property
    def root(self) -> str:
        """The root as given, without credentials: a path, or ``s3://bucket/prefix``."""
        return self._root

    @property
    def is_local(self) -> bool:
        return self._options is None

    @property
    def storage_options(self) -> dict[str, str] | None:
        """What delta-rs needs to reach the store; ``None`` for a local folder."""
        return None if self._options is None else dict(self._options)

    def uri(self, stream: str) -> str:
        return os.path.join(self._root, stream) if self.is_local else f"{self._root}/{stream}"

    def prepare(self) -> None:
        """Create a local root; an S3 bucket must exist already (the lake never creates one)."""
        if self.is_local:
            os.makedirs(self._root, exist_ok=True)

    def children(self) -> list[str]:
        """Names of the folders right under the root (candidate streams), sorted."""
        if self.is_local:
            return sorted(e.name for e in os.scandir(self._root) if e.is_dir())
        import pyarrow.fs as pafs
        from deltalake.fs import DeltaStorageHandler

        store = pafs.PyFileSystem(DeltaStorageHandler(self._root, self._options))
        found = store.get_file_info(pafs.FileSelector("", allow_not_found=True))
        return sorted(i.base_name for i in found if i.type == pafs.FileType.Directory)

    def storage_error(self, doing: str, error: OSError) -> LakeStorageError:
        """A readable error for ``error`` (delta-rs's are long and coloured)."""
        text = _ANSI.sub("", str(error)).replace("↳", " ")
        first = text.strip().splitlines()[0].strip() if text.strip() else type(error).__name__
        details = [*_HTTP_STATUS.findall(text)[:1], *_S3_CODE.findall(text)[:1]]
        detail = "; ".join([first[:300], *details])
        hint = "" if self.is_local else f": {S3_SETTINGS_HINT}"
        return LakeStorageError(f"the lake at {self._root} failed while {doing}: {detail}{hint}")
