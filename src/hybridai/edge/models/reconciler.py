"""Desired-state reconciler: make the models this edge runs match what the cloud wants.

Each new version is downloaded, checked against the sha256 in the desired state and against
its Ed25519 signature under the trusted key (pinned on first use or provisioned), loaded,
warmed up and only then swapped in; requests in flight finish on the old version. A version
that fails any step is reported as failed and the edge keeps serving the one it has. Artifacts
are cached on disk so a restarted edge serves without the cloud (the desired state itself is
kept by ``edge.desired_cache``; the reconciler only reconciles models).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from hybridai.link.signing import SignatureInvalid, TrustedKey, key_id, verify_artifact
from hybridai.protocol.fleet import DesiredState, LoadedModel, ModelAssignment
from hybridai.protocol.names import check_name
from hybridai.protocol.runtime import DEFAULT_PROVIDER_ORDER, RuntimeOptions
from hybridai.serving.onnx_runtime import ModelLoadError, OnnxModel
from hybridai.serving.repository import ModelRepository

log = logging.getLogger(__name__)


def _session_settings(a: ModelAssignment) -> tuple[RuntimeOptions | None, str | None]:
    """The model's runtime options and the provider it needs, from its placement policy."""
    if a.policy is None:
        return None, None
    return a.policy.runtime, a.policy.needs.execution_provider


class ArtifactSource(Protocol):
    async def artifact(self, path: str) -> bytes: ...


class ArtifactRefused(Exception):
    """The artifact does not match what the desired state promised."""


class Reconciler:
    def __init__(
        self,
        repository: ModelRepository,
        source: ArtifactSource,
        cache_dir: Path,
        threads: int = 1,
        trust: TrustedKey | None = None,
        execution_providers: Sequence[str] = DEFAULT_PROVIDER_ORDER,
    ) -> None:
        self.repository = repository
        self._source = source
        self._cache = cache_dir
        self._cache.mkdir(parents=True, exist_ok=True)
        self._threads = threads
        self._providers = tuple(execution_providers)
        # name -> the session settings its current version was loaded with: a redeploy that
        # changes them reloads the same version
        self._sessions: dict[str, tuple[RuntimeOptions | None, str | None]] = {}
        self.trust = trust or TrustedKey(cache_dir / "trusted-signing-key.pub")
        self._offered_key: str | None = None
        self.models: dict[str, LoadedModel] = {}
        self._reloads_done: dict[str, set[str]] = {}  # self-healing orders already carried out

    def _artifact_path(self, a: ModelAssignment) -> Path:
        # Names are allow-listed in the protocol; checked again here, where they become a path.
        name, version = check_name("model name", a.name), check_name("model version", a.version)
        digest = a.sha256[:16]
        if not digest.isalnum():
            raise ArtifactRefused(f"{name} v{version}: the sha256 is not hexadecimal")
        return self._cache / f"{name}-{version}-{a.variant}-{digest}.onnx"

    def cache_artifact(
        self, a: ModelAssignment, data: bytes, signing_public_key: str | None = None
    ) -> None:
        """Seed the cache (an offline bundle): ``apply`` then loads it without downloading.

        The signature is verified first: an artifact that would be refused is never written
        (``apply`` then reports it refused, as it would a download).
        """
        if hashlib.sha256(data).hexdigest() != a.sha256:
            raise ArtifactRefused(f"{a.name} v{a.version}: bundled artifact does not match")
        self._offered_key = signing_public_key
        try:
            self._verify(a)
        except ArtifactRefused as exc:
            log.error("not caching %s v%s: %s", a.name, a.version, exc)
            return
        tmp = self._artifact_path(a).with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self._artifact_path(a))

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

    def _verify(self, a: ModelAssignment) -> None:
        """Refuse an artifact whose signature is missing or not valid under the trusted key."""
        try:
            trusted = self.trust.accept(self._offered_key)
        except ValueError as exc:
            raise ArtifactRefused(str(exc)) from None
        if trusted is None:
            raise ArtifactRefused(
                "no trusted signing key: the cloud offered none and none is provisioned "
                "(--signing-key-file)"
            )
        if self._offered_key and self._offered_key != trusted:
            where = "provisioned" if self.trust.fixed else str(self.trust.pin_path)
            raise ArtifactRefused(
                f"the cloud signs with key {key_id(self._offered_key)} but this edge trusts "
                f"{key_id(trusted)} ({where}): "
                "replace the trusted key deliberately if the cloud's key was rotated"
            )
        try:
            verify_artifact(trusted, a.signature, a.name, a.version, a.variant, a.sha256)
        except SignatureInvalid as exc:
            raise ArtifactRefused(f"signature check failed: {exc}") from None

    def _load(self, a: ModelAssignment, data: bytes) -> OnnxModel:
        runtime, needed = _session_settings(a)
        model = OnnxModel.load(
            a.name,
            a.version,
            data,
            threads=self._threads,
            runtime=runtime,
            needed_provider=needed,
            providers=self._providers,
        )
        model.warm_up()
        return model

    async def _apply_one(self, a: ModelAssignment) -> None:
        same_session = self._sessions.get(a.name) == _session_settings(a)
        if self.repository.current_version(a.name) == a.version and same_session:
            known = self.models.get(a.name)
            if known is not None and known.error:  # back on it (a rollback): the error is past
                self.models[a.name] = known.model_copy(
                    update={"error": None, "failed_version": None}
                )
            return
        self.models[a.name] = LoadedModel(
            name=a.name, version=a.version, variant=a.variant, state="loading"
        )
        try:
            self._verify(a)  # before download: a refused artifact costs no bandwidth
            data = await self._fetch(a)
            model = await asyncio.to_thread(self._load, a, data)
        except (ArtifactRefused, ModelLoadError) as exc:
            log.error("refusing %s v%s: %s", a.name, a.version, exc)
            self._mark_failed(a, f"refused: {exc}", refused=True)
            return
        except Exception as exc:  # transient (cloud unreachable): reported, then retried
            self._mark_failed(a, f"not loaded yet, retrying: {type(exc).__name__}: {exc}")
            raise
        previous = self.repository.current_version(a.name)
        self.repository.put(model)  # the atomic swap
        self.repository.retain(a.name, {a.version} | ({previous} if previous else set()))
        self._sessions[a.name] = _session_settings(a)
        self.models[a.name] = LoadedModel(
            name=a.name,
            version=a.version,
            variant=a.variant,
            state="ready",
            provider=model.provider,
        )
        log.info("serving %s v%s on %s (was %s)", a.name, a.version, model.provider, previous)

    def _mark_failed(self, a: ModelAssignment, error: str, refused: bool = False) -> None:
        current = self.repository.current_version(a.name)
        self.models[a.name] = LoadedModel(
            name=a.name,
            version=current or a.version,
            variant=a.variant,
            state="ready" if current else "failed",
            error=f"v{a.version} {error}",
            failed_version=a.version if refused else None,
            provider=self.repository.get(a.name).provider if current else None,
        )

    async def apply(self, desired: DesiredState) -> None:
        """Converge on ``desired``; transient download errors propagate so the caller retries."""
        self._offered_key = desired.signing_public_key
        reload = desired.settings.healing.reload if desired.settings.healing else {}
        for assignment in desired.models:
            if assignment.name in reload:
                self._forget_failure(assignment, reload[assignment.name])
            await self._apply_one(assignment)

    def _forget_failure(self, a: ModelAssignment, order: str) -> None:
        """A self-healing restart: drop a failed model's cached file so it loads anew.

        Only a model that failed is touched, and only once per order, so the order is safe to
        see again (every desired state carries it while it is active).
        """
        known = self.models.get(a.name)
        if known is None or order in self._reloads_done.get(a.name, ()):
            return
        if known.state != "failed" and known.failed_version != a.version:
            return
        self._reloads_done.setdefault(a.name, set()).add(order)
        path = self._artifact_path(a)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        log.warning("restarting %s v%s on a self-healing order: loading it anew", a.name, a.version)
        self.models[a.name] = known.model_copy(update={"failed_version": None})

    async def restore(self, desired: DesiredState) -> None:
        """Serve what ``desired`` (cached before a restart) names, from the local cache only."""
        self._offered_key = desired.signing_public_key
        for a in desired.models:
            if not self._artifact_path(a).exists():
                continue
            try:
                await self._apply_one(a)
            except OSError as exc:
                log.warning("cached %s v%s unusable: %s", a.name, a.version, exc)

    def loaded(self) -> list[LoadedModel]:
        return list(self.models.values())
