"""What an ONNX artifact takes and gives, as Open Inference Protocol v2 tensor metadata.

The registry refuses, at registration, an artifact the v2 API could not serve (a non-tensor
input such as a zipmap output, an element type v2 cannot carry, bytes that are not ONNX), so a
bad model never reaches the fleet.
"""

from __future__ import annotations

from typing import Any

import onnx

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.tensors import ONNX_ELEMENT_TO_V2


def _invalid(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_INPUT, message)


def _tensors(values: Any, variant: str, role: str, skip: set[str]) -> list[dict[str, Any]]:
    tensors: list[dict[str, Any]] = []
    for value in values:
        if value.name in skip:  # old exporters list initializers among the graph inputs
            continue
        if value.type.WhichOneof("value") != "tensor_type":
            raise _invalid(
                f"{role} {value.name!r} of the {variant} artifact is not a tensor: v2 serves "
                "tensors only (for scikit-learn classifiers convert with "
                "options={'zipmap': False})"
            )
        tensor = value.type.tensor_type
        datatype = ONNX_ELEMENT_TO_V2.get(onnx.TensorProto.DataType.Name(tensor.elem_type).lower())
        if datatype is None:
            element = onnx.TensorProto.DataType.Name(tensor.elem_type)
            raise _invalid(
                f"{role} {value.name!r} of the {variant} artifact has element type {element}, "
                "which the Open Inference Protocol v2 cannot carry"
            )
        shape = (
            [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim]
            if tensor.HasField("shape")
            else [-1]
        )
        tensors.append({"name": value.name, "datatype": datatype, "shape": shape})
    return tensors


def inspect_onnx(data: bytes, variant: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the v2 input and output tensor metadata; 400 if ``data`` is not usable ONNX."""
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises several types for garbage input
        raise _invalid(f"the {variant} artifact is not a valid ONNX model: {exc}") from None
    if model.ir_version <= 0 or not model.graph.output:
        raise _invalid(
            f"the {variant} artifact is not a valid ONNX model: no IR version or no graph "
            "outputs (was it exported with onnx.save / skl2onnx?)"
        )
    initializers = {init.name for init in model.graph.initializer}
    inputs = _tensors(model.graph.input, variant, "input", initializers)
    outputs = _tensors(model.graph.output, variant, "output", set())
    return inputs, outputs
