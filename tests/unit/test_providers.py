"""Execution providers: which ones a session gets, in what order, and what it really runs on.

This machine's onnxruntime offers the CPU (and Azure, which runs no operators of its own), so
the GPU providers are exercised as what they are here: asked for and not available.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from _models import train_classifier_onnx
from hybridai.edge.models.reconciler import Reconciler
from hybridai.link.signing import public_key_text, sign_artifact
from hybridai.protocol.fleet import DesiredState, ModelAssignment
from hybridai.protocol.placement import PlacementNeeds, PlacementPolicy
from hybridai.protocol.runtime import (
    CPU_PROVIDER,
    DEFAULT_PROVIDER_ORDER,
    KNOWN_PROVIDERS,
    RuntimeOptions,
)
from hybridai.serving import model_info
from hybridai.serving.onnx_runtime import OnnxModel
from hybridai.serving.providers import create_session, plan
from hybridai.serving.repository import ModelRepository

CUDA = "CUDAExecutionProvider"
OPENVINO = "OpenVINOExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
AZURE = "AzureExecutionProvider"
MODEL = train_classifier_onnx(seed=0)
KEY = Ed25519PrivateKey.generate()


def test_every_provider_onnxruntime_knows_is_a_known_name() -> None:
    assert set(ort.get_all_providers()) <= set(KNOWN_PROVIDERS)
    assert set(DEFAULT_PROVIDER_ORDER) <= set(KNOWN_PROVIDERS)
    assert DEFAULT_PROVIDER_ORDER[-1] == CPU_PROVIDER


@pytest.mark.parametrize(
    ("configured", "runtime", "needed", "available", "providers", "missing"),
    [
        # the configured order, filtered by what the machine offers, CPU last
        (DEFAULT_PROVIDER_ORDER, None, None, [CPU_PROVIDER, OPENVINO, CUDA], (CUDA, OPENVINO), ()),
        (DEFAULT_PROVIDER_ORDER, None, None, [CPU_PROVIDER, AZURE], (), ()),
        ([CPU_PROVIDER], None, None, [CUDA, CPU_PROVIDER], (), ()),
        # the model's own order wins over the configured one; what it lacks is news
        ([CUDA], [OPENVINO, CUDA], None, [CUDA, OPENVINO, CPU_PROVIDER], (OPENVINO, CUDA), ()),
        (
            DEFAULT_PROVIDER_ORDER,
            [TENSORRT, CUDA],
            None,
            [CUDA, CPU_PROVIDER],
            (CUDA,),
            (TENSORRT,),
        ),
        # nothing listed after the CPU ever runs an operator: it is not tried
        ([CPU_PROVIDER, CUDA], None, None, [CUDA, CPU_PROVIDER], (), ()),
        # a provider the model needs goes first
        ([OPENVINO], None, CUDA, [CUDA, OPENVINO, CPU_PROVIDER], (CUDA, OPENVINO), ()),
        ([CPU_PROVIDER], None, CUDA, [CPU_PROVIDER], (), (CUDA,)),
        (
            DEFAULT_PROVIDER_ORDER,
            None,
            OPENVINO,
            [CUDA, OPENVINO, CPU_PROVIDER],
            (OPENVINO, CUDA),
            (),
        ),
        # ... unless the model's own list names it: that order stands as written
        (
            [CPU_PROVIDER],
            [OPENVINO, CUDA],
            CUDA,
            [CUDA, OPENVINO, CPU_PROVIDER],
            (OPENVINO, CUDA),
            (),
        ),
        ([CPU_PROVIDER], [OPENVINO], CUDA, [CUDA, OPENVINO, CPU_PROVIDER], (CUDA, OPENVINO), ()),
    ],
)
def test_plan_orders_filters_and_ends_on_the_cpu(
    configured: list[str],
    runtime: list[str] | None,
    needed: str | None,
    available: list[str],
    providers: tuple[str, ...],
    missing: tuple[str, ...],
) -> None:
    options = RuntimeOptions(execution_providers=runtime) if runtime else None
    chosen = plan(configured, options, needed, available)
    assert chosen.providers == (*providers, CPU_PROVIDER)
    assert chosen.missing == missing


def test_a_provider_this_machine_lacks_falls_back_to_the_cpu_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = RuntimeOptions(
        execution_providers=[CUDA, CPU_PROVIDER], provider_options={CUDA: {"device_id": 0}}
    )
    with caplog.at_level(logging.WARNING, logger="hybridai.serving.providers"):
        model = OnnxModel.load("pm", "1", MODEL, runtime=runtime, providers=[CPU_PROVIDER])
    assert model.provider == CPU_PROVIDER
    assert model.metadata().parameters == {"provider": CPU_PROVIDER}
    assert CUDA not in ort.get_available_providers()  # what this test is about
    (record,) = [r for r in caplog.records if CUDA in r.getMessage()]
    assert "model 'pm' version 1 asks for CUDAExecutionProvider" in record.getMessage()
    assert "does not offer" in record.getMessage()


def test_the_configured_order_is_silent_about_hardware_the_machine_lacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="hybridai.serving.providers"):
        model = OnnxModel.load("pm", "1", MODEL, providers=DEFAULT_PROVIDER_ORDER)
    assert model.provider == CPU_PROVIDER
    assert caplog.records == []


def test_a_provider_the_machine_has_is_used_in_the_models_order() -> None:
    if AZURE not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no Azure provider")
    runtime = RuntimeOptions(execution_providers=[AZURE, CPU_PROVIDER])
    made = create_session(MODEL, label="pm", runtime=runtime)
    assert made.provider == AZURE
    assert made.providers == (AZURE, CPU_PROVIDER)


def test_a_provider_that_fails_to_start_gives_way_to_the_next(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A GPU whose driver is broken: onnxruntime raises when the session is made with it."""
    asked: list[list[Any]] = []

    def factory(artifact: bytes, options: ort.SessionOptions, providers: list[Any]) -> Any:
        asked.append(providers)
        if providers[0][0] == CUDA:
            raise RuntimeError("CUDA failure 35: CUDA driver version is insufficient")
        return ort.InferenceSession(artifact, options, providers=providers)

    runtime = RuntimeOptions(
        provider_options={CUDA: {"device_id": 1, "cudnn_conv_use_max_workspace": True}}
    )
    with caplog.at_level(logging.WARNING, logger="hybridai.serving.providers"):
        made = create_session(
            MODEL,
            label="model 'pm' version 1",
            runtime=runtime,
            configured=[CUDA, CPU_PROVIDER],
            available=[CUDA, CPU_PROVIDER],
            factory=factory,
        )
    assert made.provider == CPU_PROVIDER
    # options as onnxruntime reads them (strings, booleans as 1/0), only for their provider
    assert asked == [
        [(CUDA, {"device_id": "1", "cudnn_conv_use_max_workspace": "1"}), CPU_PROVIDER],
        [CPU_PROVIDER],
    ]
    (record,) = caplog.records
    assert record.getMessage() == (
        "model 'pm' version 1: CUDAExecutionProvider failed to initialise (CUDA failure 35: "
        "CUDA driver version is insufficient); trying CPUExecutionProvider"
    )


def test_a_session_onnxruntime_moved_elsewhere_reports_where_it_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Older onnxruntime releases fall back silently: what the session says is the truth."""

    def factory(artifact: bytes, options: ort.SessionOptions, providers: list[Any]) -> Any:
        return ort.InferenceSession(artifact, options, providers=[CPU_PROVIDER])

    with caplog.at_level(logging.WARNING, logger="hybridai.serving.providers"):
        made = create_session(
            MODEL, label="pm", configured=[CUDA], available=[CUDA, CPU_PROVIDER], factory=factory
        )
    assert made.provider == CPU_PROVIDER
    assert "pm: asked for CUDAExecutionProvider, onnxruntime runs it on CPUExecutionProvider" in (
        caplog.text
    )


def test_thread_and_graph_options_reach_the_session() -> None:
    runtime = RuntimeOptions(
        intra_op_threads=3,
        inter_op_threads=2,
        execution_mode="parallel",
        graph_optimization="basic",
    )
    options = create_session(MODEL, label="pm", runtime=runtime).session.get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.inter_op_num_threads == 2
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    # unset: the server's own thread count, one operator at a time, every optimization
    default = create_session(MODEL, label="pm", threads=2).session.get_session_options()
    assert default.intra_op_num_threads == 2
    assert default.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert default.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@pytest.mark.parametrize(
    ("runtime", "message"),
    [
        (
            {"execution_providers": ["CUDAExecutionProvidr"]},
            "unknown ONNX Runtime execution provider 'CUDAExecutionProvidr'; use one of",
        ),
        ({"execution_providers": [CUDA, CUDA]}, "CUDAExecutionProvider is listed twice"),
        ({"execution_providers": []}, "at least 1 item"),
        ({"threads": 2}, "Extra inputs are not permitted"),
        ({"intra_op_threads": 0}, "greater than or equal to 1"),
        ({"graph_optimization": "max"}, "'disabled', 'basic', 'extended' or 'all'"),
        (
            {"execution_providers": [CPU_PROVIDER], "provider_options": {CUDA: {"device_id": 0}}},
            "provider_options names CUDAExecutionProvider, which execution_providers does not "
            "list (CPUExecutionProvider): add it there or drop its options",
        ),
        ({"provider_options": {"Cuda": {}}}, "unknown ONNX Runtime execution provider 'Cuda'"),
        ({"provider_options": {CUDA: {"device_id": [0, 1]}}}, "Input should be a valid"),
        ({"provider_options": {CUDA: {"bad key": 1}}}, "String should match pattern"),
        ({"inter_op_threads": 4}, 'set execution_mode to "parallel" or drop inter_op_threads'),
    ],
)
def test_bad_runtime_options_are_refused_with_what_to_fix(
    runtime: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        PlacementPolicy.model_validate({"runtime": runtime})
    assert message in str(caught.value)


def _assignment(version: str, policy: PlacementPolicy | None) -> ModelAssignment:
    digest = hashlib.sha256(MODEL).hexdigest()
    return ModelAssignment(
        name="pm",
        version=version,
        variant="edge",
        sha256=digest,
        size=len(MODEL),
        artifact_path=f"/a/{version}",
        signature=sign_artifact(KEY, "pm", version, "edge", digest),
        policy=policy,
    )


class _Blobs:
    def __init__(self) -> None:
        self.downloads = 0

    async def artifact(self, path: str) -> bytes:
        self.downloads += 1
        return MODEL


def test_the_edge_reports_the_provider_and_reloads_when_the_runtime_changes(
    tmp_path: Path,
) -> None:
    repository, blobs = ModelRepository(), _Blobs()
    reconciler = Reconciler(repository, blobs, tmp_path / "models")

    def apply(policy: PlacementPolicy | None, generation: str) -> None:
        desired = DesiredState(
            device_id="e",
            generation=generation,
            models=[_assignment("1", policy)],
            signing_public_key=public_key_text(KEY),
        )
        asyncio.run(reconciler.apply(desired))

    apply(None, "a")
    first = repository.get("pm")
    (loaded,) = reconciler.loaded()
    assert (loaded.state, loaded.provider) == ("ready", CPU_PROVIDER)

    apply(None, "b")  # same version, same session settings: nothing to do
    assert repository.get("pm") is first

    needs_cuda = PlacementPolicy(
        needs=PlacementNeeds(execution_provider=CUDA),
        runtime=RuntimeOptions(intra_op_threads=2),
    )
    apply(needs_cuda, "c")  # redeployed with new runtime options: the same version reloads
    second = repository.get("pm")
    assert second is not first
    assert second._session.get_session_options().intra_op_num_threads == 2
    assert reconciler.loaded()[0].provider == CPU_PROVIDER  # CUDA is not here
    assert blobs.downloads == 1  # from the cache


def test_model_info_lists_each_loaded_version_with_its_provider() -> None:
    registry, first, second = CollectorRegistry(), ModelRepository(), ModelRepository()
    first.put(OnnxModel.load("pm", "1", MODEL))
    second.put(OnnxModel.load("pm", "1", MODEL))
    second.put(OnnxModel.load("pm", "2", MODEL))
    model_info.watch(registry, "hybridai_edge", first)
    model_info.watch(registry, "hybridai_edge", second)  # a later server on the same registry
    text = generate_latest(registry).decode()
    assert "# TYPE hybridai_edge_model_info gauge" in text
    lines = [line for line in text.splitlines() if line.startswith("hybridai_edge_model_info{")]
    assert lines == [
        f'hybridai_edge_model_info{{model="pm",provider="{CPU_PROVIDER}",version="{v}"}} 1.0'
        for v in ("1", "2")
    ]


def test_doctor_edge_names_where_models_will_run() -> None:
    from hybridai.cli._doctor_edge import execution_providers
    from hybridai.edge.settings import EdgeSettings

    default = execution_providers(EdgeSettings(), [CPU_PROVIDER, AZURE])
    assert (default.verdict, default.detail) == (
        "pass",
        f"onnxruntime offers {CPU_PROVIDER}, {AZURE}; models run on {CPU_PROVIDER}",
    )
    on_gpu = execution_providers(EdgeSettings(), [CUDA, CPU_PROVIDER])
    assert (on_gpu.verdict, on_gpu.detail.rsplit("; ", 1)[1]) == ("pass", f"models run on {CUDA}")
    # an order the operator set names hardware they expect: missing, it is a warning
    expected = EdgeSettings(execution_providers=[CUDA, CPU_PROVIDER])
    missing = execution_providers(expected, [CPU_PROVIDER])
    assert missing.verdict == "warn"
    assert missing.detail.endswith(f"models run on {CPU_PROVIDER}, not on {CUDA}")
    assert "onnxruntime-gpu" in missing.fix
