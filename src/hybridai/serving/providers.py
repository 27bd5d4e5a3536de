"""The one place ONNX Runtime sessions are made: which execution providers, with what options.

A model runs on the providers its runtime options list (or the server's configured order),
with a provider it needs put first, each skipped when this machine's onnxruntime does not offer
it, and the CPU always last. A provider that fails to initialise is dropped and the next one
tried; onnxruntime's own silent fallback is turned off, and what a session really runs on is read
back from ``session.get_providers()``, so what is reported (metadata, status, metrics) is the
truth, and every fallback from what was asked is logged with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from hybridai.protocol.runtime import CPU_PROVIDER, RuntimeOptions

log = logging.getLogger(__name__)

# What ONNX Runtime raises: its own error classes, none of which derive from RuntimeError.
ORT_ERRORS: tuple[type[BaseException], ...] = (
    *(
        cls
        for cls in vars(_ort_state).values()
        if isinstance(cls, type) and issubclass(cls, Exception)
    ),
    RuntimeError,
    ValueError,
)

_GRAPH_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}

SessionFactory = Callable[[bytes, ort.SessionOptions, list[Any]], ort.InferenceSession]


@dataclass(frozen=True)
class ProviderPlan:
    """The providers to try, in order (CPU last), and the ones asked for that are not here."""

    providers: tuple[str, ...]
    missing: tuple[str, ...]


@dataclass(frozen=True)
class Session:
    """A created session and the provider it really runs on (its first one)."""

    session: ort.InferenceSession
    provider: str
    providers: tuple[str, ...]


def plan(
    configured: Sequence[str],
    runtime: RuntimeOptions | None,
    needed: str | None,
    available: Sequence[str],
) -> ProviderPlan:
    """Order the providers: the model's list (else ``configured`` with ``needed`` first), CPU last.

    ``missing`` names only what the model itself asked for (its list or ``needed``): the
    server's configured order is a preference over hardware it may not have, and is not news.
    """
    asked = list(runtime.execution_providers) if runtime and runtime.execution_providers else []
    order = list(asked or configured)
    if needed is not None and needed not in asked:  # the model's own order stands as written
        order = [needed, *(p for p in order if p != needed)]
        asked = [needed, *asked]
    offered = set(available)
    # The CPU runs every operator: providers listed after it would never get any.
    order = order[: order.index(CPU_PROVIDER)] if CPU_PROVIDER in order else order
    chosen = [p for p in order if p in offered]
    missing = tuple(p for p in dict.fromkeys(asked) if p not in offered)
    return ProviderPlan((*chosen, CPU_PROVIDER), missing)


def session_options(runtime: RuntimeOptions | None, threads: int) -> ort.SessionOptions:
    """Threads and graph optimization from the model's runtime options, else the server's."""
    r = runtime or RuntimeOptions()
    options = ort.SessionOptions()
    options.intra_op_num_threads = r.intra_op_threads or threads
    options.inter_op_num_threads = r.inter_op_threads or 1
    options.execution_mode = _MODES[r.execution_mode or "sequential"]
    options.graph_optimization_level = _GRAPH_LEVELS[r.graph_optimization or "all"]
    options.log_severity_level = 4  # errors reach callers as exceptions; no stderr noise
    return options


def _option_text(value: str | bool | int | float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _with_options(providers: Sequence[str], runtime: RuntimeOptions | None) -> list[Any]:
    given = runtime.provider_options if runtime else {}
    return [
        (p, {k: _option_text(v) for k, v in given[p].items()}) if p in given else p
        for p in providers
    ]


def _ort_session(
    artifact: bytes, options: ort.SessionOptions, providers: list[Any]
) -> ort.InferenceSession:
    # enable_fallback=0: a failing provider raises here instead of onnxruntime printing to
    # stdout and retrying on the CPU behind our back.
    return ort.InferenceSession(
        artifact, sess_options=options, providers=providers, enable_fallback=0
    )


def create_session(
    artifact: bytes,
    *,
    label: str,
    runtime: RuntimeOptions | None = None,
    needed: str | None = None,
    configured: Sequence[str] = (CPU_PROVIDER,),
    threads: int = 1,
    available: Sequence[str] | None = None,
    factory: SessionFactory = _ort_session,
) -> Session:
    """A session on the best provider that starts; ``label`` names the model in logs.

    Raises what onnxruntime raises (``ORT_ERRORS``) when even the CPU cannot load the
    artifact: then the artifact itself is at fault, not a provider.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    offered = ort.get_available_providers() if available is None else available
    chosen = plan(configured, runtime, needed, offered)
    for provider in chosen.missing:
        log.warning(
            "%s asks for %s, which this machine's onnxruntime does not offer (it offers %s); "
            "running it on the next provider in its order",
            label,
            provider,
            ", ".join(offered),
        )
    options = session_options(runtime, threads)
    remaining = list(chosen.providers)
    while True:
        try:
            session = factory(artifact, options, _with_options(remaining, runtime))
        except ORT_ERRORS as exc:
            if len(remaining) == 1:
                raise
            log.warning(
                "%s: %s failed to initialise (%s); trying %s",
                label,
                remaining[0],
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                remaining[1],
            )
            remaining.pop(0)
            continue
        running = tuple(session.get_providers())
        if running and running[0] != remaining[0]:
            log.warning(
                "%s: asked for %s, onnxruntime runs it on %s", label, remaining[0], running[0]
            )
        return Session(session, running[0] if running else CPU_PROVIDER, running)
