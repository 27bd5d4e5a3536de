"""The one allow-list for names that come from outside: they end up in paths, URLs and logs.

Model names, versions, stream and stream names, device ids, site names and file names inside
bundles are all checked here before any of them is joined into a file path or a URL, or looked
up. A name is 1-63 ASCII letters, digits, ``.``, ``_`` or ``-``, starting with a letter or
digit and never containing ``..``: no path separator, no parent directory, no control
character, nothing a URL must escape. Each kind may be narrower where it is stored (a model
name is lowercase in the registry); none is wider.
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import quote

NameKind = Literal[
    "model name",
    "model version",
    "model variant",
    "stream",
    "device id",
    "site",
    "file name",
]
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)


class InvalidName(ValueError):
    """A name outside the allow-list; the message names the kind, never echoes the value."""

    def __init__(self, kind: NameKind) -> None:
        super().__init__(
            f"the {kind} is not a valid name: use 1-63 ASCII letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
        self.kind = kind


def is_name(value: object) -> bool:
    """Whether ``value`` is a string the allow-list accepts."""
    return isinstance(value, str) and bool(_NAME.fullmatch(value)) and ".." not in value


def check_name(kind: NameKind, value: object) -> str:
    """``value`` when it is a valid name of ``kind``; else ``InvalidName``."""
    if not is_name(value):
        raise InvalidName(kind)
    assert isinstance(value, str)
    return value


def check_file_name(value: object) -> str:
    """A relative file path inside an archive: valid names joined by single ``/``."""
    if not isinstance(value, str) or not value:
        raise InvalidName("file name")
    for part in value.split("/"):
        check_name("file name", part)
    return value


def v2_model_path(name: str, version: str | None, suffix: str = "") -> str:
    """The v2 path of a model (and version), each name escaped as one URL path segment.

    Names are checked where they enter; escaping here as well means a name that slipped past
    can never change the path or make an invalid URL when the edge forwards a request.
    """
    path = f"/v2/models/{quote(name, safe='')}"
    if version:
        path += f"/versions/{quote(version, safe='')}"
    return path + suffix
