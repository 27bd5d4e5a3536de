"""Where a store lives, by URL: a local folder or an S3 bucket and prefix, parsed once.

Every store that takes a URL (the blob store, the lake) reads it here, so ``PATH``,
``file:///PATH`` and ``s3://BUCKET/PREFIX`` mean the same everywhere and a bad URL is refused
with the same reason. How to reach S3 (endpoint, credentials, region) is never part of the URL:
it comes from settings as ``S3Options`` (or, when unset, from the standard ``AWS_*`` variables
and credential chain), so a URL can be logged and shown, and a secret never is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

__all__ = ["Location", "S3Options", "parse_location"]

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_FORMS = "a folder, file:///PATH or s3://BUCKET/PREFIX"


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3-compatible store; ``None`` leaves a value to the AWS defaults."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    region: str | None = None
    allow_http: bool = False

    def storage_options(self) -> dict[str, str]:
        """The options delta-rs takes; conditional put makes concurrent commits safe."""
        options = {"AWS_CONDITIONAL_PUT": "etag"}
        given = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
        }
        options.update({key: value for key, value in given.items() if value})
        if self.allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        return options


@dataclass(frozen=True)
class Location:
    """A parsed store URL: ``path`` for a local folder, or ``bucket`` and ``prefix`` on S3."""

    path: str | None = None
    bucket: str | None = None
    prefix: str = ""  # S3 only: folder names joined by '/', no slash at either end

    @property
    def is_local(self) -> bool:
        return self.path is not None

    @property
    def root(self) -> str:
        """The location as a string without credentials: a path, or ``s3://bucket/prefix``."""
        if self.path is not None:
            return self.path
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, name: str) -> str:
        """The S3 object key of ``name`` (a ``/``-separated relative path) under the prefix."""
        return f"{self.prefix}/{name}" if self.prefix else name


def parse_location(url: str, *, what: str = "store", settings: str = "S3 settings") -> Location:
    """Parse a store URL; ``what`` names the store and ``settings`` its S3 settings in errors.

    Raises ``ValueError`` saying what is wrong and what to write instead; the message never
    repeats a URL that could carry a secret.
    """
    if not url:
        raise ValueError(f"the {what} URL is empty: use {_FORMS}")
    if "://" not in url:
        return Location(path=url.rstrip("/") or "/")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{what} URL {url!r}: file URLs must name a local path")
        return Location(path=unquote(parts.path).rstrip("/") or "/")
    if scheme != "s3":
        raise ValueError(f"unsupported {what} URL scheme '{scheme}://': use {_FORMS}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ValueError(
            f"the {what} URL must be s3://BUCKET/PREFIX alone: put credentials and the endpoint "
            f"in the {settings}, never in the URL"
        )
    bucket = parts.netloc
    if not _BUCKET.fullmatch(bucket):
        raise ValueError(
            f"{what} URL 's3://{bucket}/...': {bucket!r} is not a valid bucket name (3-63 "
            "lowercase letters, digits, dots or hyphens)"
        )
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise ValueError(f"{what} URL {url!r}: the prefix must be plain folder names")
    return Location(bucket=bucket, prefix=prefix)
