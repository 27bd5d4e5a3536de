"""An ONNX model on ONNX Runtime, served through the v2 contract.

Requests are checked against the model's own signature before they reach ONNX Runtime, so a
client learns which tensor is wrong and how, instead of reading a runtime stack message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.runtime import CPU_PROVIDER, RuntimeOptions
from hybridai.protocol.tensors import (
    ONNX_ELEMENT_TO_V2,
    decode,
    encode,
    numpy_dtype,
    v2_datatype,
)
from hybridai.protocol.v2 import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    TensorMetadata,
)
from hybridai.serving.providers import ORT_ERRORS, create_session

PLATFORM = "onnxruntime_onnx"

# What ONNX Runtime raises: its own error classes, none of which derive from RuntimeError.
_ORT_ERRORS: tuple[type[BaseException], ...] = (
    *(
        cls
        for cls in vars(_ort_state).values()
        if isinstance(cls, type) and issubclass(cls, Exception)
    ),
    RuntimeError,
)

Array = npt.NDArray[Any]


class ModelLoadError(Exception):
    """The artifact cannot be served; the message says what to do about it."""


@dataclass(frozen=True)
class _Signature:
    """One tensor of the model's signature; -1 marks a dimension of any size."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"'{self.name}' ({self.datatype} {list(self.shape)})"

    def metadata(self) -> TensorMetadata:
        return TensorMetadata.model_validate(
            {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}
        )


def _signature(arg: Any, role: str, model: str) -> _Signature:
    datatype = ONNX_ELEMENT_TO_V2.get(arg.type.removeprefix("tensor(").removesuffix(")"))
    if datatype is None:
        hint = " (for scikit-learn, export with options={id(clf): {'zipmap': False}})"
        raise ModelLoadError(
            f"model '{model}': {role} '{arg.name}' has type {arg.type}, which the v2 protocol "
            f"cannot carry; export the model with plain tensor {role}s"
            + (hint if arg.type.startswith("seq(") else "")
        )
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape or [])
    return _Signature(arg.name, datatype, shape)


class OnnxModel:
    """A loaded, immutable model version; safe to run from many threads at once."""

    def __init__(
        self,
        name: str,
        version: str,
        sha256: str,
        session: ort.InferenceSession,
        inputs: Sequence[_Signature],
        outputs: Sequence[_Signature],
    ) -> None:
        self.name = name
        self.version = version
        self.sha256 = sha256
        self._session = session
        self._inputs = {s.name: s for s in inputs}
        self._outputs = {s.name: s for s in outputs}
        self.provider = CPU_PROVIDER  # the ONNX Runtime execution provider it runs on

    @classmethod
    def load(
        cls,
        name: str,
        version: str,
        artifact: bytes,
        *,
        threads: int = 1,
        runtime: RuntimeOptions | None = None,
        needed_provider: str | None = None,
        providers: Sequence[str] = (CPU_PROVIDER,),
    ) -> OnnxModel:
        """Parse the artifact into a session; raises ``ModelLoadError`` if it cannot serve.

        ``providers`` is the server's order of execution providers, ``runtime`` the model's own
        options and ``needed_provider`` one it must have: ``serving.providers`` picks from them.
        """
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        sha256 = hashlib.sha256(artifact).hexdigest()
        try:
            made = create_session(
                artifact,
                label=f"model '{name}' version {version}",
                runtime=runtime,
                needed=needed_provider,
                configured=providers,
                threads=threads,
            )
        except ORT_ERRORS as exc:
            raise ModelLoadError(
                f"model '{name}' version {version}: the artifact ({len(artifact)} bytes, "
                f"sha256 {sha256[:12]}) is not a loadable ONNX model ({exc}); re-export it "
                "to ONNX, check it with onnx.checker.check_model and upload it again"
            ) from exc
        session = made.session
        inputs = [_signature(a, "input", name) for a in session.get_inputs()]
        outputs = [_signature(a, "output", name) for a in session.get_outputs()]
        model = cls(name, version, sha256, session, inputs, outputs)
        model.provider = made.provider
        return model

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            name=self.name,
            versions=[self.version],
            platform=PLATFORM,
            inputs=[s.metadata() for s in self._inputs.values()],
            outputs=[s.metadata() for s in self._outputs.values()],
            parameters={"provider": self.provider},
        )

    def warm_up(self) -> None:
        """Run once on a batch of 1 so the first real request does not pay for lazy setup."""
        feeds: dict[str, Array] = {}
        for sig in self._inputs.values():
            shape = tuple(1 if d < 0 else d for d in sig.shape)
            if sig.datatype == "BYTES":
                feeds[sig.name] = np.full(shape, "", dtype=object)
            else:
                feeds[sig.name] = np.zeros(shape, dtype=numpy_dtype(sig.datatype))
        try:
            self.infer(feeds)
        except ApiError as exc:
            raise ModelLoadError(
                f"model '{self.name}' version {self.version} failed its warm-up inference on "
                f"zeros ({exc.message}); check that the model runs on a batch of 1"
            ) from exc

    def infer(
        self, inputs: Mapping[str, Array], outputs: list[str] | None = None
    ) -> dict[str, Array]:
        """Run on numpy arrays after checking them against the signature (``ApiError`` 400)."""
        given: dict[str, tuple[str, tuple[int, ...]]] = {}
        for name, array in inputs.items():
            try:
                datatype = v2_datatype(array.dtype)
            except ValueError:
                datatype = str(array.dtype)
            given[name] = (datatype, tuple(array.shape))
        self._check_inputs(given)
        return self._run(self._check_outputs(outputs), inputs)

    def _run(self, names: list[str], inputs: Mapping[str, Array]) -> dict[str, Array]:
        """The session on inputs already checked against the signature."""
        feeds = {name: np.ascontiguousarray(array) for name, array in inputs.items()}
        try:
            results = self._session.run(names, feeds)
        except _ORT_ERRORS as exc:
            raise ApiError(
                400,
                ErrorCode.INVALID_INPUT,
                f"model '{self.name}' version {self.version} could not run on this input: "
                f"{exc}; check the input values against what the model expects",
            ) from None
        return dict(zip(names, results, strict=True))

    def run(self, request: InferenceRequest) -> InferenceResponse:
        """Serve one v2 request: check, decode, infer, encode (each input checked once)."""
        arrays, wanted = self.decode_request(request)
        names = list(self._outputs) if wanted is None else list(dict.fromkeys(wanted))
        return self.respond(request, self._run(names, arrays))

    def batch_problem(self) -> str | None:
        """Why requests cannot be concatenated along dimension 0 (None: they can)."""
        for role, sigs in (("input", self._inputs), ("output", self._outputs)):
            for sig in sigs.values():
                if not sig.shape or sig.shape[0] != -1:
                    return (
                        f"model '{self.name}' version {self.version}: {role} {sig.describe()} "
                        "has no dynamic first (batch) dimension; export the model with a "
                        "dynamic batch dimension, or deploy it without batching"
                    )
        return None

    def decode_request(
        self, request: InferenceRequest
    ) -> tuple[dict[str, Array], list[str] | None]:
        """Check a v2 request against the signature and decode its tensors (``ApiError`` 400)."""
        seen: set[str] = set()
        for tensor in request.inputs:
            if tensor.name in seen:
                raise ApiError(
                    400,
                    ErrorCode.BAD_REQUEST,
                    f"input '{tensor.name}' appears more than once; send each input once",
                )
            seen.add(tensor.name)
        self._check_inputs({t.name: (t.datatype, tuple(t.shape)) for t in request.inputs})
        wanted = [o.name for o in request.outputs] if request.outputs else None
        if wanted is not None:
            self._check_outputs(wanted)
        # decode refuses a value out of its datatype's range (400 datatype_mismatch)
        return {tensor.name: decode(tensor) for tensor in request.inputs}, wanted

    def respond(self, request: InferenceRequest, results: Mapping[str, Array]) -> InferenceResponse:
        """Encode what ``infer`` returned as this request's v2 response."""
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=request.id,
            outputs=[encode(name, array) for name, array in results.items()],
        )

    def _check_inputs(self, given: Mapping[str, tuple[str, tuple[int, ...]]]) -> None:
        def expected() -> str:  # only an error spells it out: the hot path skips it
            return ", ".join(s.describe() for s in self._inputs.values())

        for name in given:
            if name not in self._inputs:
                raise ApiError(
                    400,
                    ErrorCode.INPUT_NOT_FOUND,
                    f"model '{self.name}' has no input '{name}'; its inputs are {expected()}",
                )
        for sig in self._inputs.values():
            if sig.name not in given:
                raise ApiError(
                    400,
                    ErrorCode.INPUT_NOT_FOUND,
                    f"input {sig.describe()} is missing; model '{self.name}' needs {expected()}",
                )
            datatype, shape = given[sig.name]
            if datatype != sig.datatype:
                raise ApiError(
                    400,
                    ErrorCode.DATATYPE_MISMATCH,
                    f"input '{sig.name}' must be {sig.datatype} but is {datatype}; "
                    f"send it as {sig.datatype}",
                )
            if len(shape) != len(sig.shape) or any(
                want not in (-1, got) for want, got in zip(sig.shape, shape, strict=False)
            ):
                raise ApiError(
                    400,
                    ErrorCode.SHAPE_MISMATCH,
                    f"input '{sig.name}' must have shape {list(sig.shape)} (-1: any size) "
                    f"but has shape {list(shape)}",
                )

    def _check_outputs(self, outputs: list[str] | None) -> list[str]:
        if outputs is None:
            return list(self._outputs)
        for name in outputs:
            if name not in self._outputs:
                raise ApiError(
                    400,
                    ErrorCode.BAD_REQUEST,
                    f"model '{self.name}' has no output '{name}'; "
                    f"ask for some of {', '.join(self._outputs)} or omit 'outputs' for all",
                )
        return list(dict.fromkeys(outputs))
