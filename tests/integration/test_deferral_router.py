"""The learned deferral router, end to end: trained on validation, exported, signed, run at an edge.

Real data (noisy circles: a linear edge model cannot follow them, so its own confidence says
little about where it is wrong), real scikit-learn edge and cloud models exported to ONNX, a
router trained and exported by ``cloud.pipelines.deferral``, real Ed25519 signatures, and the
live edge router (``EdgeBackend``) over them; the cloud is an httpx MockTransport serving the
real cloud ONNX model.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sklearn.datasets import make_circles
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hybridai.cloud.pipelines import deferral
from hybridai.edge.cloud_client import CloudClient
from hybridai.edge.routing.backend import EdgeBackend
from hybridai.edge.routing.deferral import DeferralRouters
from hybridai.edge.routing.placement_state import PlacementState
from hybridai.link.signing import public_key_text
from hybridai.orchestrator.deferral import router_features
from hybridai.protocol.deferral import DeferralMethod, DeferralSpec, RouterSpec
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.placement import PlacementPolicy
from hybridai.protocol.v2 import InferenceRequest
from hybridai.serving import ModelRepository, OnnxModel

KEY = Ed25519PrivateKey.generate()
Array = np.ndarray[Any, Any]


class World:
    """Circles split three ways; edge and cloud trained on train, the router on validation."""

    def __init__(self) -> None:
        x, y = make_circles(4000, noise=0.15, factor=0.6, random_state=0)
        self.x = x.astype(np.float32)
        self.y = np.asarray(y)
        train, valid, test = np.split(np.arange(4000), [2000, 3200])
        self.test = test
        edge = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[train], y[train])
        cloud = HistGradientBoostingClassifier(random_state=0).fit(x[train], y[train])
        self.edge_onnx = deferral.export(edge, 2)
        self.cloud_onnx = deferral.export(cloud, 2)
        probs = edge.predict_proba(x[valid])
        edge_ok = (edge.predict(x[valid]) == y[valid]).astype(float)
        cloud_ok = (cloud.predict(x[valid]) == y[valid]).astype(float)
        self.fit = deferral.fit_router(x[valid], probs, edge_ok, cloud_ok, seed=0)
        self.edge = edge


def router_spec(world: World, key: Ed25519PrivateKey = KEY) -> RouterSpec:
    assert world.fit.model is not None and world.fit.family is not None
    width = router_features(world.x[:1], world.edge.predict_proba(world.x[:1])).shape[1]
    onnx = deferral.export(world.fit.model, width)
    threshold = deferral.calibrate(world.fit, DeferralMethod.ROUTER, target_cloud_share=0.3)
    return deferral.router_spec(onnx, threshold.threshold, width, world.fit.family, "pm", "1", key)


class Cloud:
    def __init__(self, artifact: bytes) -> None:
        self.model = OnnxModel.load("pm", "1", artifact)
        self.calls = 0

    async def __call__(self, http_request: httpx.Request) -> httpx.Response:
        if http_request.url.path.endswith("/health/live"):
            return httpx.Response(200, json={"live": True})
        self.calls += 1
        response = self.model.run(InferenceRequest.model_validate_json(http_request.content))
        return httpx.Response(200, content=response.model_dump_json(exclude_none=True))


def edge_backend(world: World, spec: DeferralSpec | None) -> tuple[EdgeBackend, Cloud]:
    policy = PlacementPolicy.model_validate(
        {"kind": "cascade", "cascade": {"measure": "margin", "threshold": 0.0}}
    )  # threshold 0: the edge's own confidence never escalates
    desired = DesiredState(
        device_id="edge-1",
        generation="g1",
        signing_public_key=public_key_text(KEY),
        models=[
            ModelAssignment(
                name="pm",
                version="1",
                variant="edge",
                sha256="0" * 64,
                size=1,
                artifact_path="/x",
                policy=policy,
                deferral=spec,
            )
        ],
    )
    repo = ModelRepository()
    model = OnnxModel.load("pm", "1", world.edge_onnx)
    model.warm_up()
    repo.put(model)
    cloud = Cloud(world.cloud_onnx)
    state = PlacementState("edge-1")
    edge = EdgeBackend(
        repo,
        CloudClient("https://cloud.test", "edge-1", transport=httpx.MockTransport(cloud)),
        state.link,
        "edge-1",
        state=state,
        probe_interval_s=3600.0,
        desired=lambda: desired,
        deferral=DeferralRouters(lambda: desired, lambda: public_key_text(KEY)),
    )
    return edge, cloud


def ask(edge: EdgeBackend, rows: Array) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        answers = []
        try:
            for row in rows:
                request = InferenceRequest.model_validate(
                    {
                        "inputs": [
                            {
                                "name": "input",
                                "shape": [1, 2],
                                "datatype": "FP32",
                                "data": row.tolist(),
                            }
                        ]
                    }
                )
                response = await edge.infer("pm", None, request)
                answers.append(dict(response.parameters or {}))
        finally:
            await edge.aclose()
        return answers

    return asyncio.run(go())


@pytest.fixture(scope="module")
def world() -> World:
    return World()


def test_the_edge_escalates_exactly_what_its_router_predicts_wrong(world: World) -> None:
    spec = router_spec(world)
    edge, cloud = edge_backend(world, DeferralSpec(method=DeferralMethod.ROUTER, router=spec))
    rows = world.x[world.test[:60]]
    answers = ask(edge, rows)
    # What the router predicts for each row, computed offline from the shipped bytes.
    onnx = base64.b64decode(spec.onnx)
    right = deferral.run(onnx, router_features(rows, world.edge.predict_proba(rows)))
    predicted = right < spec.threshold
    assert [a["deferral"] for a in answers] == ["router"] * len(rows)
    assert [a["escalated"] for a in answers] == predicted.tolist()
    assert 0 < predicted.sum() < len(rows) and cloud.calls == predicted.sum()
    np.testing.assert_allclose([a["router_confidence"] for a in answers], right, atol=1e-5)
    assert all(a["router_us"] > 0 for a in answers)


def test_a_tampered_router_is_refused_and_the_threshold_decides(world: World) -> None:
    spec = router_spec(world)
    raw = bytearray(base64.b64decode(spec.onnx))
    raw[len(raw) // 2] ^= 0xFF
    tampered = spec.model_copy(update={"onnx": base64.b64encode(bytes(raw)).decode()})
    edge, cloud = edge_backend(world, DeferralSpec(method=DeferralMethod.ROUTER, router=tampered))
    answers = ask(edge, world.x[world.test[:5]])
    assert all(a["deferral"] == "threshold" and a["router_unavailable"] for a in answers)
    assert not any(a["escalated"] for a in answers) and cloud.calls == 0
    assert edge.deferral is not None
    assert "sha256" in edge.deferral.refused[spec.sha256]


def test_a_router_signed_by_another_key_or_version_is_refused(world: World) -> None:
    forged = router_spec(world, key=Ed25519PrivateKey.generate())
    edge, _ = edge_backend(world, DeferralSpec(method=DeferralMethod.ROUTER, router=forged))
    answers = ask(edge, world.x[world.test[:3]])
    assert all(a["deferral"] == "threshold" for a in answers)
    assert edge.deferral is not None
    assert "signature" in edge.deferral.refused[forged.sha256]

    spec = router_spec(world)
    other_version = deferral.router_spec(
        base64.b64decode(spec.onnx), spec.threshold, spec.features, "gbm", "pm", "2", KEY
    )  # validly signed, but for version 2: not movable onto version 1
    edge, _ = edge_backend(world, DeferralSpec(method=DeferralMethod.ROUTER, router=other_version))
    assert all(a["deferral"] == "threshold" for a in ask(edge, world.x[world.test[:3]]))


def test_the_threshold_method_ignores_a_shipped_router(world: World) -> None:
    spec = DeferralSpec(method=DeferralMethod.THRESHOLD, router=router_spec(world))
    edge, cloud = edge_backend(world, spec)
    answers = ask(edge, world.x[world.test[:5]])
    assert all(a["deferral"] == "threshold" and "router_confidence" not in a for a in answers)
    assert cloud.calls == 0


def test_the_router_is_chosen_only_when_its_validation_apgr_is_higher(world: World) -> None:
    # Circles: the linear edge's confidence is near useless, the router learns its errors.
    fit = world.fit
    assert fit.apgr[DeferralMethod.ROUTER] > fit.apgr[DeferralMethod.THRESHOLD] + 0.1
    assert fit.method is DeferralMethod.ROUTER
    # A calibrated edge: it is right with exactly its own top probability, so its confidence
    # already says all there is; a router can only match it, and out of fold it does worse.
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 2))
    p1 = 1 / (1 + np.exp(-2 * x[:, 0]))
    probs = np.stack([1 - p1, p1], axis=1)
    edge_ok = (rng.random(2000) < probs.max(axis=1)).astype(float)
    calibrated = deferral.fit_router(x, probs, edge_ok, np.ones(2000), seed=0)
    assert calibrated.apgr[DeferralMethod.ROUTER] <= calibrated.apgr[DeferralMethod.THRESHOLD]
    assert calibrated.method is DeferralMethod.THRESHOLD


def test_the_exported_router_agrees_with_scikit_learn(world: World) -> None:
    assert world.fit.model is not None
    rows = world.x[world.test[:200]]
    features = router_features(rows, world.edge.predict_proba(rows))
    onnx = deferral.export(world.fit.model, features.shape[1])
    expected = world.fit.model.predict_proba(features)[:, 1]
    np.testing.assert_allclose(deferral.run(onnx, features), expected, atol=1e-4)


def test_calibrating_the_router_hits_the_target_share_on_validation(world: World) -> None:
    fitted = deferral.calibrate(world.fit, DeferralMethod.ROUTER, target_cloud_share=0.3)
    assert abs(fitted.cloud_share - 0.3) < 0.01
    with pytest.raises(ValueError, match="exactly one"):
        deferral.calibrate(world.fit, DeferralMethod.ROUTER)
