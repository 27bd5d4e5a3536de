"""Start from an offline bundle (``hybridai model bundle``): serve before the cloud is reachable.

The bundle's desired-state fragment is applied through the ordinary reconciler: the bundled
artifacts seed its cache, then digests and signatures are checked against the bundle's key
(pinned on first use, unless the device was provisioned with a key of its own, which then must
match). Nothing in a bundle is trusted that a download would not have to prove.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

from hybridai.edge.models.reconciler import Reconciler
from hybridai.protocol.fleet import DesiredState

FORMAT = "hybridai-bundle/1"
MAX_MEMBER_BYTES = 512 * 2**20


class BundleError(ValueError):
    """The file is not a usable bundle; the message says what is wrong with it."""


def read_bundle(path: Path) -> tuple[DesiredState, dict[str, bytes]]:
    """The desired-state fragment and the artifacts by sha256, each checked against the manifest."""
    try:
        with tarfile.open(path, mode="r:*") as archive:
            files: dict[str, bytes] = {}
            for member in archive.getmembers():
                if not member.isfile() or member.size > MAX_MEMBER_BYTES:
                    continue  # links, folders, oversized entries: never read
                handle = archive.extractfile(member)
                if handle is not None:
                    files[member.name] = handle.read()
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"cannot read the bundle {path}: {exc}") from None
    try:
        manifest: dict[str, Any] = json.loads(files["manifest.json"])
    except (KeyError, ValueError):
        raise BundleError(
            f"{path} has no readable manifest.json: make it with `hybridai model bundle`"
        ) from None
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path} is format {manifest.get('format')!r}, this edge reads {FORMAT}")
    desired = DesiredState.model_validate(manifest["desired"])
    artifacts: dict[str, bytes] = {}
    for entry in manifest.get("artifacts", {}).values():
        data = files.get(entry["file"])
        if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleError(f"{path}: {entry['file']} is missing or does not match its sha256")
        artifacts[entry["sha256"]] = data
    return desired, artifacts


async def start_from_bundle(reconciler: Reconciler, path: Path) -> DesiredState:
    """Seed the cache with the bundle's artifacts and apply its desired state (no network)."""
    desired, artifacts = read_bundle(path)
    for assignment in desired.models:
        data = artifacts.get(assignment.sha256)
        if data is None:
            raise BundleError(
                f"{path} lacks the artifact of {assignment.name} v{assignment.version}"
            )
        reconciler.cache_artifact(assignment, data)
    await reconciler.apply(desired)
    return desired
