"""Model serving shared by the edge agent and the cloud: ONNX Runtime behind the v2 protocol."""

from __future__ import annotations

from hybridai.serving.errors import install_error_handlers
from hybridai.serving.onnx_runtime import ModelLoadError, OnnxModel
from hybridai.serving.repository import ModelRepository
from hybridai.serving.v2_routes import InferenceBackend, v2_router

__all__ = [
    "InferenceBackend",
    "ModelLoadError",
    "ModelRepository",
    "OnnxModel",
    "install_error_handlers",
    "v2_router",
]
