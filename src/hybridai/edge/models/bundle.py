"""Start from an offline bundle (``hybridai model bundle``): serve before the cloud is reachable.

The bundle's desired-state fragment is applied through the ordinary reconciler: the bundled
artifacts seed its cache, then digests and signatures are checked against the bundle's key
(pinned on first use, unless the device was provisioned with a key of its own, which then must
match). Nothing in a bundle is trusted that a download would not have to prove.

A bundle is outside input, so reading it is bounded before anything is decompressed into
memory: at most ``MAX_MEMBERS`` entries, their declared sizes together at most
``MAX_BUNDLE_BYTES``, only plain files and folders (no links, devices or sparse files, whose
declared size says nothing about the bytes they hold), and every name on the allow-list of
``protocol.names``. Only the manifest and the artifacts it names are read.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hybridai.edge.models.reconciler import Reconciler
from hybridai.protocol.fleet import DesiredState
from hybridai.protocol.names import InvalidName, check_file_name

FORMAT = "hybridai-bundle/1"
MANIFEST = "manifest.json"
MAX_MEMBERS = 64
MAX_BUNDLE_BYTES = 512 * 2**20  # declared sizes of all entries together
MAX_MANIFEST_BYTES = 2**20


class BundleError(ValueError):
    """The file is not a usable bundle; the message says what is wrong with it."""


def _members(archive: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    """The archive's plain files by name, refusing the whole bundle at the first bad entry."""
    files: dict[str, tarfile.TarInfo] = {}
    total = 0
    count = 0
    while (member := archive.next()) is not None:
        count += 1
        if count > MAX_MEMBERS:
            raise BundleError(f"{path} has more than {MAX_MEMBERS} entries: not a model bundle")
        try:
            check_file_name(member.name.removeprefix("./").rstrip("/"))
        except InvalidName:
            raise BundleError(
                f"{path}: entry {count} has a name that is not a plain relative file name"
            ) from None
        if member.isdir():
            continue
        if member.issparse() or not member.isreg():
            raise BundleError(
                f"{path}: entry {count} is not a plain file (a link, device or sparse file); "
                "a bundle holds only files: make it with `hybridai model bundle`"
            )
        total += member.size
        if total > MAX_BUNDLE_BYTES:
            raise BundleError(
                f"{path}: its files add up to more than {MAX_BUNDLE_BYTES} bytes, the most a "
                "bundle may hold"
            )
        files[member.name.removeprefix("./")] = member
    return files


def _read(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise tarfile.TarError("unreadable entry")
    return handle.read(member.size)


def _desired(manifest: dict[str, Any], path: Path) -> DesiredState:
    try:
        return DesiredState.model_validate(manifest.get("desired"))
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BundleError(
            f"{path}: the manifest's desired state is invalid at {where}: {first['msg']}"
        ) from None


def read_bundle(path: Path) -> tuple[DesiredState, dict[str, bytes]]:
    """The desired-state fragment and the artifacts by sha256, each checked against the manifest."""
    try:
        with tarfile.open(path, mode="r:*") as archive:
            files = _members(archive, path)
            entry = files.get(MANIFEST)
            if entry is None or entry.size > MAX_MANIFEST_BYTES:
                raise BundleError(
                    f"{path} has no readable manifest.json: make it with `hybridai model bundle`"
                )
            try:
                manifest = json.loads(_read(archive, entry))
            except ValueError:
                raise BundleError(
                    f"{path} has no readable manifest.json: make it with `hybridai model bundle`"
                ) from None
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                found = manifest.get("format") if isinstance(manifest, dict) else None
                raise BundleError(f"{path} is format {found!r:.40}, this edge reads {FORMAT}")
            desired = _desired(manifest, path)
            artifacts: dict[str, bytes] = {}
            entries = manifest.get("artifacts", {})
            for variant, item in entries.items() if isinstance(entries, dict) else ():
                name = item.get("file") if isinstance(item, dict) else None
                digest = item.get("sha256") if isinstance(item, dict) else None
                member = files.get(name) if isinstance(name, str) else None
                if member is None or not isinstance(digest, str):
                    raise BundleError(f"{path}: the artifact of variant {variant!r:.20} is missing")
                data = _read(archive, member)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise BundleError(f"{path}: {member.name} does not match its sha256")
                artifacts[digest] = data
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise BundleError(f"cannot read the bundle {path}: {exc}") from None
    return desired, artifacts


async def start_from_bundle(reconciler: Reconciler, path: Path) -> DesiredState:
    """Seed the cache with the bundle's artifacts and apply its desired state (no network).

    Each artifact's signature is verified before it is written to the cache.
    """
    desired, artifacts = read_bundle(path)
    for assignment in desired.models:
        data = artifacts.get(assignment.sha256)
        if data is None:
            raise BundleError(
                f"{path} lacks the artifact of {assignment.name} v{assignment.version}"
            )
        reconciler.cache_artifact(assignment, data, desired.signing_public_key)
    await reconciler.apply(desired)
    return desired
