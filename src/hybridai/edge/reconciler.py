"""Desired-state reconciler: make the models this edge runs match what the cloud wants.

Each new version is downloaded, checked against the sha256 in the desired state, loaded,
warmed up and only then swapped in; requests in flight finish on the old version. A version
that fails any step is reported as failed and the edge keeps serving the one it has. Artifacts
and the last desired state are cached on disk so a restarted edge serves without the cloud.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import Protocol

from hybridai.protocol.fleet import DesiredState, LoadedModel, ModelAssignment
from hybridai.serving.onnx_runtime import ModelLoadError, OnnxModel
from hybridai.serving.repository import ModelRepository

log = logging.getLogger(__name__)


class ArtifactSource(Protocol):
    async def artifact(self, path: str) -> bytes: ...


class ArtifactRefused(Exception):
    """The artifact does not match what the desired state promised."""


class Reconciler:
    def __init__(
        self, repository: ModelRepository, source: ArtifactSource, cache_dir: Path, threads: int = 1
    ) -> None:
        self.repository = repository
        self._source = source
        self._cache = cache_dir
        self._cache.mkdir(parents=True, exist_ok=True)
        self._threads = threads
        self.models: dict[str, LoadedModel] = {}
        self.settings: dict[str, object] = {}
        self.generation: str | None = None

    def _artifact_path(self, a: ModelAssignment) -> Path:
        return self._cache / f"{a.name}-{a.version}-{a.variant}-{a.sha256[:16]}.onnx"

    async def _fetch(self, a: ModelAssignment) -> bytes:
        cached = self._artifact_path(a)
        if cached.exists():
            data = cached.read_bytes()
            if hashlib.sha256(data).hexdigest() == a.sha256:
                return data
            cached.unlink()  # damaged cache: fetch again
        data = await self._source.artifact(a.artifact_path)
        actual = hashlib.sha256(data).hexdigest()
        if actual != a.sha256:
            raise ArtifactRefused(
                f"{a.name} v{a.version}: downloaded sha256 {actual} != expected {a.sha256}"
            )
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, cached)
        return data

    def _load(self, a: ModelAssignment, data: bytes) -> OnnxModel:
        model = OnnxModel.load(a.name, a.version, data, threads=self._threads)
        model.warm_up()
        return model

    async def _apply_one(self, a: ModelAssignment) -> None:
        if self.repository.current_version(a.name) == a.version:
            return
        self.models[a.name] = LoadedModel(
            name=a.name, version=a.version, variant=a.variant, state="loading"
        )
        try:
            data = await self._fetch(a)
            model = await asyncio.to_thread(self._load, a, data)
        except (ArtifactRefused, ModelLoadError) as exc:
            log.error("refusing %s v%s: %s", a.name, a.version, exc)
            self._mark_failed(a, str(exc))
            return
        previous = self.repository.current_version(a.name)
        self.repository.put(model)  # the atomic swap
        self.repository.retain(a.name, {a.version} | ({previous} if previous else set()))
        self.models[a.name] = LoadedModel(
            name=a.name, version=a.version, variant=a.variant, state="ready"
        )
        log.info("serving %s v%s (was %s)", a.name, a.version, previous)

    def _mark_failed(self, a: ModelAssignment, error: str) -> None:
        current = self.repository.current_version(a.name)
        self.models[a.name] = LoadedModel(
            name=a.name,
            version=current or a.version,
            variant=a.variant,
            state="ready" if current else "failed",
            error=f"v{a.version} refused: {error}",
        )

    async def apply(self, desired: DesiredState) -> None:
        """Converge on ``desired``; transient download errors propagate so the caller retries."""
        for assignment in desired.models:
            await self._apply_one(assignment)
        self.settings = dict(desired.settings)
        self.generation = desired.generation
        (self._cache / "desired.json").write_text(desired.model_dump_json())

    async def restore(self) -> None:
        """Serve what was desired before a restart, from the local cache only."""
        path = self._cache / "desired.json"
        if not path.exists():
            return
        desired = DesiredState.model_validate_json(path.read_text())
        for a in desired.models:
            if not self._artifact_path(a).exists():
                continue
            try:
                await self._apply_one(a)
            except OSError as exc:
                log.warning("cached %s v%s unusable: %s", a.name, a.version, exc)
        self.settings = dict(desired.settings)

    def loaded(self) -> list[LoadedModel]:
        return list(self.models.values())
