"""The learned deferral router at the edge: verified like a model, run within the decision.

A model version's ``ModelAssignment.deferral`` may carry a router (inline ONNX). Before it ever
runs, its bytes must match their sha256 and its Ed25519 signature must verify under the key
this edge trusts for model artifacts, for exactly this model, version and the router variant;
a router that fails either is refused (logged once, remembered by digest) and the cascade falls
back to the edge model's own confidence. Only the router's number, P(edge right), goes to the
pure rule (``orchestrator.deferral.decide``).

A router is used only for the version it was trained with: while a rollout swaps versions, an
answer from another version is judged by the plain threshold.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from hybridai.link.signing import SignatureInvalid, verify_artifact
from hybridai.orchestrator.deferral import Deferral, decide, router_features
from hybridai.protocol.deferral import ROUTER_VARIANT, DeferralMethod, RouterSpec
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.v2 import InferenceRequest

log = logging.getLogger(__name__)


class RouterRefused(Exception):
    """The router does not match its digest or signature, or ONNX Runtime cannot load it."""


@dataclass(frozen=True)
class LoadedRouter:
    """A verified router session, for one model version."""

    name: str
    version: str
    sha256: str
    threshold: float
    features: int
    session: ort.InferenceSession

    def confidence(self, inputs: Any, probabilities: Any) -> float:
        """P(edge right) of the least sure row of the request."""
        rows = router_features(inputs, probabilities)
        if rows.shape[1] != self.features:
            raise ValueError(f"the router expects {self.features} features, got {rows.shape[1]}")
        right = self.session.run(["probabilities"], {"input": rows})[0][:, 1]
        return float(np.min(right))


def load_router(a: ModelAssignment, spec: RouterSpec, trusted: str | None) -> LoadedRouter:
    """Verify the router's digest and signature under ``trusted``, then open it."""
    try:
        data = base64.b64decode(spec.onnx, validate=True)
    except (binascii.Error, ValueError):
        raise RouterRefused("the router's ONNX is not valid base64") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise RouterRefused(f"the router's sha256 is {actual}, not {spec.sha256} as declared")
    if trusted is None:
        raise RouterRefused("no trusted signing key yet to verify the router under")
    try:
        verify_artifact(trusted, spec.signature, a.name, a.version, ROUTER_VARIANT, spec.sha256)
    except SignatureInvalid as exc:
        raise RouterRefused(f"signature check failed: {exc}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # microseconds of work: a thread pool would only cost
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own error types for a bad model
        raise RouterRefused(f"ONNX Runtime cannot load the router: {exc}") from None
    return LoadedRouter(a.name, a.version, spec.sha256, spec.threshold, spec.features, session)


class DeferralRouters:
    """Each model's router, loaded on first use from the desired state; refusals remembered."""

    def __init__(
        self,
        desired: Callable[[], DesiredState | None],
        trusted_key: Callable[[], str | None],
    ) -> None:
        self._desired = desired
        self._trusted_key = trusted_key
        self._loaded: dict[str, LoadedRouter] = {}  # by model name
        self.refused: dict[str, str] = {}  # router sha256 -> why

    def _assignment(self, name: str) -> ModelAssignment | None:
        desired = self._desired()
        if desired is None:
            return None
        return next((m for m in desired.models if m.name == name), None)

    def router(self, name: str, version: str | None) -> LoadedRouter | None:
        """The verified router of ``name`` at ``version``; None when it has none or is refused."""
        a = self._assignment(name)
        spec = a.deferral.router if a is not None and a.deferral is not None else None
        if a is None or spec is None or a.version != version:
            return None
        loaded = self._loaded.get(name)
        if loaded is not None and (loaded.version, loaded.sha256) == (a.version, spec.sha256):
            return loaded
        if spec.sha256 in self.refused:
            return None
        try:
            loaded = load_router(a, spec, self._trusted_key())
        except RouterRefused as exc:
            self.refused[spec.sha256] = str(exc)
            log.error("refusing the deferral router of %s v%s: %s", a.name, a.version, exc)
            return None
        self._loaded[name] = loaded
        return loaded

    def method(self, name: str) -> DeferralMethod:
        a = self._assignment(name)
        return (
            a.deferral.method
            if a is not None and a.deferral is not None
            else (DeferralMethod.THRESHOLD)
        )

    def decide(
        self,
        name: str,
        version: str | None,
        request: InferenceRequest,
        probabilities: Any,
        confidence: float,
        threshold: float,
    ) -> tuple[Deferral, dict[str, Any]]:
        """The escalation decision, and what the response's ``parameters`` say of it."""
        method = self.method(name)
        router = self.router(name, version) if method is DeferralMethod.ROUTER else None
        right: float | None = None
        info: dict[str, Any] = {}
        if router is not None:
            began = time.perf_counter()
            first = request.inputs[0]
            try:
                inputs = np.asarray(first.data, dtype=np.float64).reshape(first.shape)
                right = router.confidence(inputs, probabilities)
            except (ValueError, TypeError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
                log.warning("the deferral router of %s could not judge a request: %s", name, exc)
                router = None
            else:
                info["router_us"] = round((time.perf_counter() - began) * 1e6, 1)
                info["router_confidence"] = round(right, 6)
        decision = decide(method, confidence, threshold, right, router.threshold if router else 0)
        info["deferral"] = decision.method.value
        if method is DeferralMethod.ROUTER and router is None:
            info["router_unavailable"] = True  # none for this version, or refused: see the log
        return decision, info
