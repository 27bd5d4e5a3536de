"""serving.grpc_codec on the messages tritonclient builds (its Triton superset of the protocol).

The codec reads and writes messages by field name, so Triton's generated classes exercise it as
the wire would; hybridai's own generated module is not imported here (it would clash with
tritonclient's copy of the same protobuf names in this process).
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.tensors import decode, numpy_dtype
from hybridai.protocol.v2 import InferenceResponse
from hybridai.serving.grpc_codec import fill_response, request_from

LIMIT = 1 << 20


def _request(*tensors: tuple[str, str, list[int]]) -> Any:
    request = service_pb2.ModelInferRequest(model_name="m")
    for name, datatype, shape in tensors:
        request.inputs.add(name=name, datatype=datatype, shape=shape)
    return request


def _refusal(request: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        request_from(request, LIMIT)
    assert caught.value.status == 400
    return caught.value


@pytest.mark.parametrize(
    "datatype", ["BOOL", "UINT8", "INT16", "UINT32", "INT64", "UINT64", "FP16", "FP32", "FP64"]
)
def test_raw_contents_decode_to_the_declared_tensor(datatype: str) -> None:
    values = np.arange(6).reshape(2, 3) % (2 if datatype == "BOOL" else 100)
    array = values.astype(numpy_dtype(datatype))
    request = _request(("x", datatype, [2, 3]))
    request.raw_input_contents.append(array.astype(array.dtype.newbyteorder("<")).tobytes())

    parsed = request_from(request, LIMIT)

    tensor = parsed.inputs[0]
    assert (tensor.name, tensor.shape, tensor.datatype) == ("x", [2, 3], datatype)
    np.testing.assert_array_equal(decode(tensor), array)


def test_bytes_travel_length_prefixed() -> None:
    words = ["ok", "", "héllo"]
    raw = b"".join(struct.pack("<I", len(w.encode())) + w.encode() for w in words)
    request = _request(("s", "BYTES", [3]))
    request.raw_input_contents.append(raw)
    assert request_from(request, LIMIT).inputs[0].data == words

    request.raw_input_contents[0] = raw[:-1]  # the last element is cut short
    assert _refusal(request).code is ErrorCode.BINARY_SIZE_MISMATCH


def test_typed_contents_by_datatype() -> None:
    request = _request(("a", "INT8", [2]), ("b", "FP64", [1]), ("c", "BYTES", [1]))
    request.inputs[0].contents.int_contents.extend([-3, 7])
    request.inputs[1].contents.fp64_contents.append(0.25)
    request.inputs[2].contents.bytes_contents.append(b"text")
    parsed = request_from(request, LIMIT)
    assert [list(t.data) for t in parsed.inputs] == [[-3, 7], [0.25], ["text"]]
    assert [np.asarray(t.data).dtype for t in parsed.inputs[:2]] == [np.int8, np.float64]


def test_refusals_name_the_tensor_and_the_fix() -> None:
    sized = _request(("x", "FP32", [2, 4]))
    sized.raw_input_contents.append(b"\0" * 28)
    error = _refusal(sized)
    assert error.code is ErrorCode.BINARY_SIZE_MISMATCH
    assert "input 'x'" in error.message and "must be 32 bytes" in error.message

    counted = _request(("x", "FP32", [3]))
    counted.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    assert "contents.fp32_contents" in _refusal(counted).message

    unknown = _request(("x", "FLOAT", [1]))
    unknown.raw_input_contents.append(b"\0" * 4)
    assert _refusal(unknown).code is ErrorCode.DATATYPE_MISMATCH

    negative = _request(("x", "FP32", [-1, 4]))
    assert _refusal(negative).code is ErrorCode.SHAPE_MISMATCH

    overflow = _request(("x", "UINT8", [1]))
    overflow.inputs[0].contents.uint_contents.append(300)
    assert "out of range" in _refusal(overflow).message

    not_bool = _request(("x", "BOOL", [2]))
    not_bool.raw_input_contents.append(b"\x01\x02")
    assert "0 or 1" in _refusal(not_bool).message

    half = _request(("x", "FP16", [1]))
    half.inputs[0].contents.fp32_contents.append(1.0)
    assert "raw_input_contents" in _refusal(half).message

    mixed = _request(("x", "FP32", [1]), ("y", "FP32", [1]))
    mixed.inputs[0].contents.fp32_contents.append(1.0)
    mixed.raw_input_contents.extend([b"\0" * 4, b"\0" * 4])
    assert "one or the other" in _refusal(mixed).message

    short = _request(("x", "FP32", [1]), ("y", "FP32", [1]))
    short.raw_input_contents.append(b"\0" * 4)  # one entry for two inputs
    assert "one per input" in _refusal(short).message

    assert "no inputs" in _refusal(_request()).message

    huge = _request(("x", "FP32", [LIMIT, 2]))
    assert _refusal(huge).code is ErrorCode.PAYLOAD_TOO_LARGE


def test_parameters_both_ways() -> None:
    request = _request(("x", "FP32", [1]))
    request.raw_input_contents.append(b"\0" * 4)
    request.parameters["placement"].string_param = "edge"
    request.parameters["latency_budget_ms"].double_param = 12.5  # Triton's own field
    request.parameters["strict"].bool_param = True
    request.parameters["n"].int64_param = 3
    request.id = "r-9"
    parsed = request_from(request, LIMIT)
    assert parsed.parameters == {
        "placement": "edge",
        "latency_budget_ms": 12.5,
        "strict": True,
        "n": 3,
    }
    assert parsed.id == "r-9"

    empty = _request(("x", "FP32", [1]))
    empty.raw_input_contents.append(b"\0" * 4)
    empty.parameters["nothing"].Clear()
    assert "parameter 'nothing' has no value" in _refusal(empty).message


def test_responses_carry_raw_outputs_and_typed_parameters() -> None:
    response = InferenceResponse.model_validate(
        {
            "model_name": "m",
            "model_version": "2",
            "id": "r-1",
            "parameters": {
                "placement": "edge",
                "degraded": False,
                "cost": 0,
                "service_ms": 0.5,
                "budget_ms": None,
                "estimates_ms": {"edge-1": 0.3},
            },
            "outputs": [
                {"name": "label", "shape": [2], "datatype": "INT64", "data": [0, 1]},
                {"name": "p", "shape": [2, 2], "datatype": "FP32", "data": [0.25, 0.75, 1, 0]},
                {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["yes"]},
            ],
        }
    )
    message = service_pb2.ModelInferResponse()

    fill_response(message, response)

    assert (message.model_name, message.model_version, message.id) == ("m", "2", "r-1")
    assert [o.name for o in message.outputs] == ["label", "p", "s"]
    assert list(message.outputs[1].shape) == [2, 2]
    raw = message.raw_output_contents
    np.testing.assert_array_equal(np.frombuffer(raw[0], "<i8"), [0, 1])
    np.testing.assert_array_equal(np.frombuffer(raw[1], "<f4"), [0.25, 0.75, 1, 0])
    assert raw[2] == struct.pack("<I", 3) + b"yes"
    p = message.parameters
    assert p["placement"].string_param == "edge" and p["degraded"].bool_param is False
    assert p["cost"].int64_param == 0
    assert json.loads(p["service_ms"].string_param) == 0.5
    assert p["budget_ms"].string_param == "null"
    assert json.loads(p["estimates_ms"].string_param) == {"edge-1": 0.3}
