"""Between the gRPC messages of ``grpc_predict_v2.proto`` and the v2 schemas backends take.

Backends see the same ``InferenceRequest`` whether it came over REST or gRPC, so placement,
cascade and metrics are one code path. Inputs come as typed ``contents`` or as
``raw_input_contents`` (tritonclient's default); every size is checked against the declared
datatype and shape before anything is built from it, and a refusal names the tensor and the fix.
Outputs go back as ``raw_output_contents``, the way tritonclient reads them.

Parameters: the protocol's ``InferParameter`` holds a bool, an int64 or a string. Triton's
superset adds ``double_param`` (field 4) and ``uint64_param`` (field 5), which tritonclient
sends for Python floats: those are read from the message's unknown fields. Response parameters
that are neither bool, int nor string (the placement's floats, estimates, nulls) travel as
their JSON text in ``string_param``.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.tensors import numpy_dtype
from hybridai.protocol.v2 import (
    DATATYPES,
    InferenceRequest,
    InferenceResponse,
    RequestInput,
    RequestOutput,
)

Data = list[Any] | np.ndarray[Any, Any]  # a request tensor's flat elements
_LENGTH = struct.Struct("<I")
_DOUBLE = struct.Struct("<d")
_TRITON_DOUBLE, _TRITON_UINT64 = 4, 5  # Triton's InferParameter fields beyond the protocol's
# The typed contents field that carries each datatype (FP16 travels raw only).
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def _invalid(code: ErrorCode, message: str) -> ApiError:
    return ApiError(400, code, message)


def _unknown_value(parameter: Any) -> Any:
    """A Triton ``double_param`` or ``uint64_param``, kept by protobuf as an unknown field."""
    from google.protobuf import unknown_fields

    for field in unknown_fields.UnknownFieldSet(parameter):
        if field.field_number == _TRITON_DOUBLE and isinstance(field.data, int):
            return _DOUBLE.unpack(field.data.to_bytes(8, "little"))[0]
        if field.field_number == _TRITON_UINT64 and isinstance(field.data, int):
            return field.data
    return None


def parameters_from(message_map: Any, where: str) -> dict[str, Any] | None:
    """A protobuf ``map<string, InferParameter>`` as a plain dict; None when empty."""
    if not message_map:
        return None
    out: dict[str, Any] = {}
    for key, parameter in message_map.items():
        which = parameter.WhichOneof("parameter_choice")
        value = getattr(parameter, which) if which is not None else _unknown_value(parameter)
        if value is None:
            raise _invalid(
                ErrorCode.BAD_REQUEST,
                f"{where} parameter '{key}' has no value: send a bool, int64 or string",
            )
        out[str(key)] = value
    return out


def set_parameters(message_map: Any, parameters: dict[str, Any] | None) -> None:
    """Fill a protobuf parameter map; values other than bool, int, str go as JSON text."""
    for key, value in (parameters or {}).items():
        slot = message_map[key]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            slot.int64_param = value
        elif isinstance(value, str):
            slot.string_param = value
        else:
            slot.string_param = json.dumps(value, separators=(",", ":"))


def _checked_header(tensor: Any) -> tuple[str, list[int], int]:
    name = str(tensor.name)
    datatype = str(tensor.datatype)
    if datatype not in DATATYPES:
        raise _invalid(
            ErrorCode.DATATYPE_MISMATCH,
            f"input '{name}' has datatype '{datatype}'; use one of {', '.join(DATATYPES)}",
        )
    shape = [int(d) for d in tensor.shape]
    if any(d < 0 for d in shape):
        raise _invalid(
            ErrorCode.SHAPE_MISMATCH,
            f"input '{name}' has shape {shape}; every dimension must be >= 0",
        )
    return name, shape, math.prod(shape)


def _strings(name: str, raw: bytes, count: int) -> list[str]:
    """BYTES elements, each a 4-byte little-endian length and its bytes; UTF-8 text only."""
    values: list[str] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            break
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            offset = len(raw) + 1
            break
        values.append(_text(name, raw[offset : offset + length]))
        offset += length
    if offset != len(raw) or len(values) != count:
        raise _invalid(
            ErrorCode.BINARY_SIZE_MISMATCH,
            f"input '{name}' (BYTES) must hold {count} elements, each a 4-byte little-endian "
            "length followed by that many bytes; the raw contents do not",
        )
    return values


def _text(name: str, value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(
            ErrorCode.DATATYPE_MISMATCH, f"input '{name}' holds BYTES that are not UTF-8 text"
        ) from None


def _from_raw(name: str, datatype: str, shape: list[int], count: int, raw: bytes) -> Data:
    """A flat array over the message's bytes (no copy), as the binary extension gives one."""
    if datatype == "BYTES":
        return list(_strings(name, raw, count))
    dtype = numpy_dtype(datatype).newbyteorder("<")
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise _invalid(
            ErrorCode.BINARY_SIZE_MISMATCH,
            f"input '{name}' is {datatype} of shape {shape}: its raw contents must be "
            f"{expected} bytes ({count} x {dtype.itemsize}), not {len(raw)}; make shape, "
            "datatype and data agree",
        )
    if datatype == "BOOL" and count and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        raise _invalid(
            ErrorCode.DATATYPE_MISMATCH,
            f"input '{name}' is BOOL: each raw element must be one byte, 0 or 1",
        )
    return np.frombuffer(raw, dtype=dtype)


def _from_contents(name: str, datatype: str, shape: list[int], count: int, contents: Any) -> Data:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise _invalid(
            ErrorCode.DATATYPE_MISMATCH,
            f"input '{name}' is {datatype}, which travels only in raw_input_contents",
        )
    given = getattr(contents, field)
    if len(given) != count:
        raise _invalid(
            ErrorCode.SHAPE_MISMATCH,
            f"input '{name}' has shape {shape} ({count} elements) but {len(given)} values in "
            f"contents.{field}; make shape and data agree",
        )
    if datatype == "BYTES":
        return [_text(name, bytes(v)) for v in given]
    dtype = numpy_dtype(datatype)
    if datatype in ("INT8", "INT16", "UINT8", "UINT16") and count:
        info = np.iinfo(dtype)
        if min(given) < info.min or max(given) > info.max:
            raise _invalid(
                ErrorCode.DATATYPE_MISMATCH,
                f"input '{name}' holds a value out of range for {datatype}",
            )
    return np.asarray(given, dtype=dtype)


def request_from(message: Any, max_elements: int) -> InferenceRequest:
    """A ``ModelInferRequest`` as the v2 request a backend takes; raises ``ApiError`` 400."""
    raw = message.raw_input_contents
    inputs = message.inputs
    if not inputs:
        raise _invalid(ErrorCode.BAD_REQUEST, "the request has no inputs; send at least one")
    if raw and len(raw) != len(inputs):
        raise _invalid(
            ErrorCode.BAD_REQUEST,
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs: send one "
            "per input, in the order of inputs",
        )
    converted: list[RequestInput] = []
    for index, tensor in enumerate(inputs):
        name, shape, count = _checked_header(tensor)
        if count > max_elements:
            raise _invalid(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"input '{name}' declares {count} elements, more than this server takes "
                f"({max_elements}); split the batch",
            )
        datatype = str(tensor.datatype)
        typed = tensor.HasField("contents")
        if raw and typed:
            raise _invalid(
                ErrorCode.BAD_REQUEST,
                f"input '{name}' has typed contents and the request has raw_input_contents: "
                "use one or the other",
            )
        if raw:
            data = _from_raw(name, datatype, shape, count, raw[index])
        else:
            data = _from_contents(name, datatype, shape, count, tensor.contents)
        converted.append(
            RequestInput.model_construct(
                name=name,
                shape=shape,
                datatype=datatype,
                parameters=parameters_from(tensor.parameters, f"input '{name}'"),
                data=data,
            )
        )
    outputs = [
        RequestOutput.model_construct(
            name=str(o.name), parameters=parameters_from(o.parameters, f"output '{o.name}'")
        )
        for o in message.outputs
    ]
    return InferenceRequest.model_construct(
        id=str(message.id) or None,
        parameters=parameters_from(message.parameters, "request"),
        inputs=converted,
        outputs=outputs or None,
    )


def _raw_output(datatype: str, data: Any) -> bytes:
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in np.asarray(data, dtype=object).reshape(-1).tolist():
            encoded = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts.append(_LENGTH.pack(len(encoded)))
            parts.append(encoded)
        return b"".join(parts)
    dtype = numpy_dtype(datatype).newbyteorder("<")
    return np.asarray(data, dtype=dtype).tobytes()


def fill_response(message: Any, response: InferenceResponse) -> None:
    """Write a v2 response into an empty ``ModelInferResponse`` (outputs as raw contents)."""
    message.model_name = response.model_name
    message.model_version = response.model_version or ""
    message.id = response.id or ""
    set_parameters(message.parameters, response.parameters)
    for output in response.outputs:
        tensor = message.outputs.add()
        tensor.name = output.name
        tensor.datatype = output.datatype
        tensor.shape.extend(output.shape)
        set_parameters(tensor.parameters, output.parameters)
        message.raw_output_contents.append(_raw_output(output.datatype, output.data))
