"""The v2 binary tensor data extension (Triton, KServe): JSON header, then raw tensor bytes.

A request with an ``Inference-Header-Content-Length`` header carries a JSON header of that
many bytes, then each input that declares ``parameters.binary_data_size`` in order: little-endian,
row-major, BOOL one byte, BYTES as 4-byte little-endian lengths each followed by the element.
Outputs asked for with ``binary_data: true`` (or all of them, with the request's
``binary_data_output``) come back the same way. Every size is checked against the body actually
received before anything is built from it, so a declared size allocates nothing; a binary input
becomes a flat numpy view of the body (no copy). JSON-only requests parse as they always did.
The extension's parameters are removed from the request a backend sees, so forwarding it as JSON
(edge to cloud or peer) stays plain v2.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field, ValidationError

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.tensors import numpy_dtype
from hybridai.protocol.v2 import InferenceRequest, InferenceResponse, RequestInput, ResponseOutput
from hybridai.serving.errors import validation_error

__all__ = [
    "BINARY_CONTENT_TYPE",
    "HEADER_LENGTH",
    "JSON_CONTENT_TYPE",
    "BinaryOutputs",
    "decode_request",
    "encode_response",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
_SIZE = "binary_data_size"
_BYTES_PREFIX = struct.Struct("<I")
_NUMERIC = ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
_LITTLE: dict[str, np.dtype[Any]] = {
    name: numpy_dtype(name).newbyteorder("<") for name in (*_NUMERIC, "FP16", "FP32", "FP64")
}


@dataclass(frozen=True)
class BinaryOutputs:
    """Which outputs the client wants as binary: named ones, else ``default`` for the rest."""

    default: bool = False
    named: dict[str, bool] = field(default_factory=dict)

    def wants(self, name: str) -> bool:
        return self.named.get(name, self.default)

    @property
    def any(self) -> bool:
        return self.default or any(self.named.values())


_JSON_ONLY = BinaryOutputs()


class _BinaryInput(RequestInput):
    data: list[Any] = Field(default_factory=list)  # absent when the tensor is in the binary part


class _BinaryHeader(InferenceRequest):
    inputs: list[_BinaryInput]  # type: ignore[assignment]


def _fail(code: ErrorCode, message: str) -> ApiError:
    return ApiError(400, code, message)


def _header_length(raw: str, body_length: int) -> int:
    if not raw.isascii() or not raw.isdigit():
        raise _fail(
            ErrorCode.BAD_HEADER_LENGTH,
            f"{HEADER_LENGTH} is '{raw[:32]}'; send the JSON header's length in bytes, a "
            "non-negative integer",
        )
    length = int(raw)
    if length == 0 or length > body_length:
        raise _fail(
            ErrorCode.BAD_HEADER_LENGTH,
            f"{HEADER_LENGTH} is {length} but the body has {body_length} bytes; it must be the "
            "length of the JSON header at the start of the body (1 to the body's length)",
        )
    return length


def _flag(parameters: dict[str, Any] | None, key: str, where: str) -> bool | None:
    """Pop the extension's boolean ``key``; None when absent."""
    if not parameters or key not in parameters:
        return None
    value = parameters.pop(key)
    if not isinstance(value, bool):
        raise _fail(
            ErrorCode.BAD_REQUEST, f"{where} parameter '{key}' is {value!r}; send true or false"
        )
    return value


def _outputs_wanted(request: InferenceRequest) -> BinaryOutputs:
    parameters = request.parameters
    default = None
    if parameters and "binary_data_output" in parameters:
        default = _flag(parameters, "binary_data_output", "the request's")
        if not parameters:
            request.parameters = None
    named: dict[str, bool] = {}
    for output in request.outputs or ():
        if output.parameters and "binary_data" in output.parameters:
            named[output.name] = bool(
                _flag(output.parameters, "binary_data", f"output '{output.name}'")
            )
            if not output.parameters:
                output.parameters = None
    if default is None and not named:
        return _JSON_ONLY  # the common case: no allocation
    return BinaryOutputs(bool(default), named)


def _declared_size(tensor: RequestInput) -> int | None:
    if not tensor.parameters or _SIZE not in tensor.parameters:
        return None
    size = tensor.parameters.pop(_SIZE)
    if not tensor.parameters:
        tensor.parameters = None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _fail(
            ErrorCode.BINARY_SIZE_MISMATCH,
            f"input '{tensor.name}' has {_SIZE} {size!r}; send the tensor's size in bytes, a "
            "non-negative integer",
        )
    return size


def _elements(tensor: RequestInput) -> int:
    if any(d < 0 for d in tensor.shape):
        raise _fail(
            ErrorCode.SHAPE_MISMATCH,
            f"input '{tensor.name}' has shape {tensor.shape}; every dimension must be >= 0",
        )
    return math.prod(tensor.shape)


def _fixed(tensor: RequestInput, body: bytes, offset: int, size: int) -> np.ndarray[Any, Any]:
    count = _elements(tensor)
    dtype = np.dtype(np.uint8) if tensor.datatype == "BOOL" else _LITTLE[tensor.datatype]
    if count * dtype.itemsize != size:
        raise _fail(
            ErrorCode.BINARY_SIZE_MISMATCH,
            f"input '{tensor.name}' is {tensor.datatype} of shape {tensor.shape}: "
            f"{count * dtype.itemsize} bytes, but its {_SIZE} is {size}; make them agree",
        )
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    if tensor.datatype == "BOOL":
        if count and int(array.max()) > 1:
            raise _fail(
                ErrorCode.DATATYPE_MISMATCH,
                f"input '{tensor.name}' is BOOL but holds a byte other than 0 or 1; send 0 "
                "for false and 1 for true",
            )
        return array.view(np.bool_)
    return array


def _strings(tensor: RequestInput, body: bytes, offset: int, size: int) -> np.ndarray[Any, Any]:
    """BYTES elements: each a 4-byte little-endian length, then that many UTF-8 bytes."""
    count = _elements(tensor)
    end = offset + size
    values: list[str] = []
    while offset + 4 <= end and len(values) < count:  # at most size / 4 rounds
        (length,) = _BYTES_PREFIX.unpack_from(body, offset)
        offset += 4
        if length > end - offset:
            break
        try:
            values.append(body[offset : offset + length].decode())
        except UnicodeDecodeError:
            raise _fail(
                ErrorCode.DATATYPE_MISMATCH,
                f"input '{tensor.name}' element {len(values)} is not UTF-8 text; send text",
            ) from None
        offset += length
    if len(values) != count or offset != end:
        raise _fail(
            ErrorCode.BINARY_SIZE_MISMATCH,
            f"input '{tensor.name}' is BYTES of shape {tensor.shape} ({count} elements) but its "
            f"{_SIZE} bytes do not hold exactly {count} length-prefixed elements; each element "
            "is a 4-byte little-endian length followed by its bytes",
        )
    array = np.empty(count, dtype=object)
    array[:] = values
    return array


def _no_header_length(which: str) -> ApiError:
    return _fail(
        ErrorCode.BAD_HEADER_LENGTH,
        f"{which} declares {_SIZE} but the request has no {HEADER_LENGTH} header; send it "
        "with the JSON header's length in bytes",
    )


def _parse(text: bytes, schema: type[InferenceRequest]) -> InferenceRequest:
    try:
        return schema.model_validate_json(text)
    except ValidationError as exc:
        raise validation_error(exc.errors(include_url=False)) from None


def decode_request(
    body: bytes, header_length: str | None
) -> tuple[InferenceRequest, BinaryOutputs]:
    """The v2 request in ``body`` and which outputs to answer as binary.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (None when absent: the
    whole body is JSON). Raises ``ApiError`` 400 with a stable code on anything malformed.
    """
    if header_length is None:
        try:
            request = _parse(body, InferenceRequest)
        except ApiError:
            if _SIZE.encode() in body:  # binary inputs (without data) sent without the header
                raise _no_header_length("an input") from None
            raise
        for tensor in request.inputs:
            if tensor.parameters and _SIZE in tensor.parameters:
                raise _no_header_length(f"input '{tensor.name}'")
        return request, _outputs_wanted(request)
    length = _header_length(header_length.strip(), len(body))
    request = _parse(body[:length], _BinaryHeader)
    offset = length
    for tensor in request.inputs:
        size = _declared_size(tensor)
        if size is None:
            continue
        if tensor.data:
            raise _fail(
                ErrorCode.BAD_REQUEST,
                f"input '{tensor.name}' has both JSON data and {_SIZE}; send one of them",
            )
        if size > len(body) - offset:
            raise _fail(
                ErrorCode.BINARY_SIZE_MISMATCH,
                f"input '{tensor.name}' declares {_SIZE} {size} but only {len(body) - offset} "
                "bytes of the body remain; the sizes must add up to the body after the header",
            )
        if tensor.datatype == "BYTES":
            tensor.data = _strings(tensor, body, offset, size)  # type: ignore[assignment]
        else:
            tensor.data = _fixed(tensor, body, offset, size)  # type: ignore[assignment]
        offset += size
    if offset != len(body):
        raise _fail(
            ErrorCode.BINARY_SIZE_MISMATCH,
            f"the body has {len(body) - offset} bytes after the header and the binary inputs; "
            f"the inputs' {_SIZE} must add up to the body after the header",
        )
    return request, _outputs_wanted(request)


def _raw(output: ResponseOutput) -> bytes:
    data = output.data
    if output.datatype == "BYTES":
        parts: list[bytes] = []
        for value in data:
            raw = value if isinstance(value, bytes) else str(value).encode()
            parts.append(_BYTES_PREFIX.pack(len(raw)))
            parts.append(raw)
        return b"".join(parts)
    dtype = np.dtype(np.bool_) if output.datatype == "BOOL" else _LITTLE[output.datatype]
    return np.asarray(data, dtype=dtype).tobytes()


def encode_response(
    response: InferenceResponse, binary: BinaryOutputs | None = None
) -> tuple[bytes, dict[str, str]]:
    """The response body and the headers that describe it (content type, header length)."""
    if binary is None or not binary.any:
        content = response.__pydantic_serializer__.to_json(response, exclude_none=True)
        return content, {"content-type": JSON_CONTENT_TYPE}
    chunks: list[bytes] = []
    outputs: list[ResponseOutput] = []
    exclude: dict[int, set[str]] = {}
    for index, output in enumerate(response.outputs):
        if not binary.wants(output.name):
            outputs.append(output)
            continue
        raw = _raw(output)
        chunks.append(raw)
        parameters = {**(output.parameters or {}), _SIZE: len(raw)}
        outputs.append(output.model_copy(update={"parameters": parameters}))
        exclude[index] = {"data"}
    header_model = response.model_copy(update={"outputs": outputs})
    header = header_model.__pydantic_serializer__.to_json(
        header_model, exclude_none=True, exclude={"outputs": exclude}
    )
    headers = {"content-type": BINARY_CONTENT_TYPE, HEADER_LENGTH.lower(): str(len(header))}
    return b"".join([header, *chunks]), headers
