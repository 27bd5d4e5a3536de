"""Codec between v2 JSON tensors and numpy arrays, for every v2 datatype.

JSON data may be flat or nested but must be row-major and hold exactly ``prod(shape)``
elements; anything else is refused with an ``ApiError`` that names the tensor and the fix.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.v2 import Datatype, RequestInput, ResponseOutput

_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_FROM_NUMPY: dict[str, str] = {dt.str: name for name, dt in _TO_NUMPY.items() if name != "BYTES"}


# ONNX tensor element type (its name, lower case: "float", "int64") -> v2 datatype. ONNX
# Runtime writes types as "tensor(float)", the onnx package as TensorProto.FLOAT: both map here.
ONNX_ELEMENT_TO_V2: dict[str, str] = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
}


def numpy_dtype(datatype: str) -> np.dtype[Any]:
    return _TO_NUMPY[datatype]


def v2_datatype(dtype: np.dtype[Any]) -> str:
    """The v2 datatype for a numpy dtype; strings and bytes become BYTES."""
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    try:
        return _FROM_NUMPY[dtype.str]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no v2 datatype") from None


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


# The exact classes each datatype's elements may have (a bool is no number here), checked in one
# pass; anything else goes through ``_check_element``, which accepts subclasses too.
_ELEMENT_CLASSES: dict[str, frozenset[type]] = {
    name: frozenset(
        {str}
        if name == "BYTES"
        else {bool}
        if name == "BOOL"
        else {int}
        if name.startswith(("INT", "UINT"))
        else {int, float}
    )
    for name in _TO_NUMPY
}


def _check_element(tensor: RequestInput, value: Any) -> None:
    kind = tensor.datatype
    if kind == "BYTES":
        ok = isinstance(value, str)
    elif kind == "BOOL":
        ok = isinstance(value, bool)
    elif kind.startswith(("INT", "UINT")):
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        raise ApiError(
            400,
            ErrorCode.DATATYPE_MISMATCH,
            f"input '{tensor.name}' is declared {kind} but holds a {type(value).__name__}; "
            f"send {kind} values or declare the datatype that matches the data",
        )


def decode(tensor: RequestInput) -> np.ndarray[Any, Any]:
    """A request tensor as a numpy array of its declared datatype and shape."""
    if any(d < 0 for d in tensor.shape):
        raise ApiError(
            400,
            ErrorCode.SHAPE_MISMATCH,
            f"input '{tensor.name}' has shape {tensor.shape}; every dimension must be >= 0",
        )
    expected = math.prod(tensor.shape)
    if isinstance(tensor.data, np.ndarray):  # binary tensor data: typed and sized when decoded
        if tensor.data.size != expected:
            raise ApiError(
                400,
                ErrorCode.SHAPE_MISMATCH,
                f"input '{tensor.name}' has shape {tensor.shape} ({expected} elements) "
                f"but {tensor.data.size} data elements; make shape and data agree",
            )
        return tensor.data.reshape(tensor.shape)
    flat = _flatten(tensor.data)
    if len(flat) != expected:
        raise ApiError(
            400,
            ErrorCode.SHAPE_MISMATCH,
            f"input '{tensor.name}' has shape {tensor.shape} ({expected} elements) "
            f"but {len(flat)} data elements; make shape and data agree",
        )
    allowed = _ELEMENT_CLASSES.get(tensor.datatype)
    if allowed is None or not all(value.__class__ in allowed for value in flat):
        for value in flat:  # the slow walk names the first value of the wrong type
            _check_element(tensor, value)
    dtype = _TO_NUMPY[tensor.datatype]
    if tensor.datatype == "BYTES":
        array = np.array(flat, dtype=object)
    else:
        try:
            with np.errstate(over="raise", invalid="raise"):
                array = np.array(flat, dtype=dtype)
        except (OverflowError, FloatingPointError):
            raise ApiError(
                400,
                ErrorCode.DATATYPE_MISMATCH,
                f"input '{tensor.name}' holds a value out of range for {tensor.datatype}",
            ) from None
    return array.reshape(tensor.shape)


def encode(name: str, array: np.ndarray[Any, Any]) -> ResponseOutput:
    """A numpy array as a flat, row-major v2 response tensor."""
    datatype = v2_datatype(array.dtype)
    if datatype == "BYTES":
        data: list[Any] = [
            v.decode() if isinstance(v, bytes) else str(v) for v in array.reshape(-1).tolist()
        ]
    elif datatype == "FP16":
        data = array.astype(np.float32).reshape(-1).tolist()
    else:
        data = array.reshape(-1).tolist()
    return ResponseOutput(
        name=name, shape=list(array.shape), datatype=cast(Datatype, datatype), data=data
    )
