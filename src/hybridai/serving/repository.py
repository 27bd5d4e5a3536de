"""The loaded models of one server, by name and version, with one current version per name.

Models are immutable, so swapping the current version is one dictionary write under a lock:
a request that already holds its model finishes on it, new requests see the new version.
"""

from __future__ import annotations

import threading

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.serving.onnx_runtime import OnnxModel


def _version_key(version: str) -> tuple[int, int, str]:
    """Numeric versions in numeric order ("2" < "10"), others after them by name."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


class ModelRepository:
    """Thread-safe map of loaded models; the first version put for a name becomes current."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, dict[str, OnnxModel]] = {}
        self._current: dict[str, str] = {}

    def put(self, model: OnnxModel, make_current: bool = True) -> None:
        """Add (or replace) a version; warm it up before, so the swap costs no latency."""
        with self._lock:
            self._models.setdefault(model.name, {})[model.version] = model
            if make_current or model.name not in self._current:
                self._current[model.name] = model.version

    def get(self, name: str, version: str | None = None) -> OnnxModel:
        """Return the model to run; ``ApiError`` 404 names what is available instead."""
        with self._lock:
            return self._lookup(name, version)

    def current_version(self, name: str) -> str | None:
        with self._lock:
            return self._current.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def versions(self, name: str) -> list[str]:
        with self._lock:
            return sorted(self._models.get(name, {}), key=_version_key)

    def loaded(self) -> list[OnnxModel]:
        """Every loaded version of every model, by name then version."""
        with self._lock:
            return [
                versions[v]
                for _, versions in sorted(self._models.items())
                for v in sorted(versions, key=_version_key)
            ]

    def retain(self, name: str, keep: set[str]) -> None:
        """Drop every version of ``name`` outside ``keep``; the current version always stays."""
        with self._lock:
            versions = self._models.get(name)
            if versions is None:
                return
            keep = keep | {self._current[name]}
            for version in [v for v in versions if v not in keep]:
                del versions[version]

    def remove(self, name: str) -> None:
        """Forget a model entirely (all versions); in-flight requests still finish."""
        with self._lock:
            self._models.pop(name, None)
            self._current.pop(name, None)

    def _lookup(self, name: str, version: str | None) -> OnnxModel:
        versions = self._models.get(name)
        if versions is None:
            available = ", ".join(sorted(self._models)) or "none"
            raise ApiError(
                404,
                ErrorCode.MODEL_NOT_FOUND,
                f"model '{name}' is not loaded on this server; available models: {available}",
            )
        if version is None:
            version = self._current[name]
        model = versions.get(version)
        if model is None:
            available = ", ".join(sorted(versions, key=_version_key))
            raise ApiError(
                404,
                ErrorCode.VERSION_NOT_FOUND,
                f"model '{name}' has no version '{version}' here; available versions: {available}",
            )
        return model
