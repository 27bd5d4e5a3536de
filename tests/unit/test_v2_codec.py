"""The binary tensor data extension's codec: tritonclient's own bodies in, its parser out."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tritonclient.http._utils import _get_inference_request

from hybridai.protocol.errors import ApiError
from hybridai.protocol.tensors import decode, encode
from hybridai.protocol.v2 import InferenceResponse
from hybridai.serving.v2_codec import BinaryOutputs, decode_request, encode_response

DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def triton_body(
    arrays: dict[str, np.ndarray[Any, Any]],
    binary: bool = True,
    outputs: list[triton.InferRequestedOutput] | None = None,
) -> tuple[bytes, str | None]:
    """What tritonclient.http sends for these inputs (its own request builder)."""
    inputs = []
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == object else _datatype(array.dtype)
        tensor = triton.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    body, length = _get_inference_request(
        inputs=inputs,
        request_id="",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=0,
        timeout=None,
        custom_parameters=None,
    )
    return (body if isinstance(body, bytes) else body.encode()), (
        None if length is None else str(length)
    )


def _datatype(dtype: np.dtype[Any]) -> str:
    return next(k for k, v in DTYPES.items() if np.dtype(v) == dtype)


def raw_body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, str]:
    text = json.dumps(header).encode()
    return text + b"".join(chunks), str(len(text))


def fp32_header(size: int, shape: list[int] | None = None) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "x",
                "shape": shape or [2, 2],
                "datatype": "FP32",
                "parameters": {"binary_data_size": size},
            }
        ]
    }


def refused(body: bytes, length: str | None) -> ApiError:
    with pytest.raises(ApiError) as caught:
        decode_request(body, length)
    assert caught.value.status == 400
    return caught.value


# --- requests ---


def test_binary_inputs_decode_to_typed_arrays_without_the_extension_parameters() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    words = np.array([b"caf\xc3\xa9", b""], dtype=object)
    body, length = triton_body({"x": x, "words": words})

    request, binary = decode_request(body, length)

    assert np.array_equal(decode(request.inputs[0]), x)
    assert decode(request.inputs[1]).tolist() == ["café", ""]
    assert all(t.parameters is None for t in request.inputs)
    assert request.parameters is None  # binary_data_output moved out of the request
    assert binary == BinaryOutputs(default=True)


def test_a_binary_input_is_forwarded_as_plain_json() -> None:
    body, length = triton_body({"x": np.ones((1, 2), dtype=np.float32)})

    request, _ = decode_request(body, length)

    assert json.loads(request.model_dump_json(exclude_none=True)) == {
        "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 1.0]}]
    }


def test_json_inputs_with_a_header_length_and_json_only_requests_both_decode() -> None:
    x = np.array([[1.5, 2.5]], dtype=np.float32)
    wanted = [triton.InferRequestedOutput("y", binary_data=False)]
    mixed, length = triton_body({"x": x}, binary=False, outputs=wanted)

    request, binary = decode_request(mixed, length)
    plain, _ = decode_request(mixed, None)

    assert length is None  # tritonclient sends no header length when nothing is binary
    assert decode(request.inputs[0]).tolist() == [[1.5, 2.5]]
    assert decode(plain.inputs[0]).tolist() == [[1.5, 2.5]]
    assert binary == BinaryOutputs(named={"y": False})
    assert request.outputs is not None and request.outputs[0].parameters is None


@pytest.mark.parametrize("length", ["abc", "-5", "1.5", "0", "", "99999"])
def test_a_bad_header_length_is_refused(length: str) -> None:
    body, _ = raw_body(fp32_header(16), bytes(16))

    error = refused(body, length)

    assert error.code == "bad_header_length"
    assert "Inference-Header-Content-Length" in error.message


def test_a_header_length_that_cuts_the_json_is_malformed_json() -> None:
    body, length = raw_body(fp32_header(16), bytes(16))

    error = refused(body, str(int(length) - 3))

    assert error.code == "malformed_json"


@pytest.mark.parametrize(
    ("size", "data", "fix"),
    [
        (16, bytes(8), "remain"),  # declared more than the body holds
        (8, bytes(8), "bytes, but its binary_data_size is 8"),  # dtype x shape is 16
        (16, bytes(20), "after the header"),  # trailing bytes
        (-1, bytes(16), "non-negative"),
        (2**62, bytes(16), "remain"),  # huge: refused before anything is allocated
        ("16", bytes(16), "non-negative integer"),
        (True, bytes(16), "non-negative integer"),
    ],
)
def test_sizes_that_do_not_add_up_are_refused(size: Any, data: bytes, fix: str) -> None:
    body, length = raw_body(fp32_header(size), data)

    error = refused(body, length)

    assert error.code == "binary_size_mismatch"
    assert fix in error.message


def test_a_huge_declared_shape_allocates_nothing() -> None:
    body, length = raw_body(fp32_header(16, shape=[2**31, 2**31]), bytes(16))

    error = refused(body, length)

    assert error.code == "binary_size_mismatch"


def test_a_negative_dimension_is_a_shape_mismatch() -> None:
    body, length = raw_body(fp32_header(16, shape=[-2, -2]), bytes(16))

    assert refused(body, length).code == "shape_mismatch"


@pytest.mark.parametrize(
    "chunk",
    [
        struct.pack("<I", 5) + b"ab",  # an element longer than what is left
        struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b" + b"zz",  # trailing bytes
        struct.pack("<I", 1) + b"a",  # one element of the two declared
        b"\x01\x00",  # a cut length prefix
        struct.pack("<I", 2**32 - 1),  # a huge declared element
    ],
)
def test_malformed_bytes_elements_are_refused(chunk: bytes) -> None:
    header = {"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES"}]}
    header["inputs"][0]["parameters"] = {"binary_data_size": len(chunk)}
    body, length = raw_body(header, chunk)

    assert refused(body, length).code == "binary_size_mismatch"


def test_bytes_that_are_not_text_and_bools_that_are_not_0_or_1_are_datatype_mismatches() -> None:
    text = struct.pack("<I", 1) + b"\xff"
    texts, text_length = raw_body(
        {
            "inputs": [
                {
                    "name": "s",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 5},
                }
            ]
        },
        text,
    )
    flags, flag_length = raw_body(
        {
            "inputs": [
                {
                    "name": "b",
                    "shape": [2],
                    "datatype": "BOOL",
                    "parameters": {"binary_data_size": 2},
                }
            ]
        },
        b"\x01\x02",
    )

    assert refused(texts, text_length).code == "datatype_mismatch"
    assert refused(flags, flag_length).code == "datatype_mismatch"


def test_binary_data_size_without_a_header_length_says_to_send_it() -> None:
    body, _ = raw_body(fp32_header(16), bytes(16))

    error = refused(body[: body.index(b"}]}") + 3], None)

    assert error.code == "bad_header_length"
    assert "send it" in error.message


def test_json_data_and_a_binary_size_together_are_refused() -> None:
    header = fp32_header(16)
    header["inputs"][0]["data"] = [1, 2, 3, 4]
    body, length = raw_body(header, bytes(16))

    assert refused(body, length).code == "bad_request"


def test_a_binary_data_flag_that_is_not_a_bool_is_refused() -> None:
    header = fp32_header(16)
    header["outputs"] = [{"name": "y", "parameters": {"binary_data": "yes"}}]
    body, length = raw_body(header, bytes(16))

    error = refused(body, length)

    assert error.code == "bad_request"
    assert "true or false" in error.message


# --- responses ---


def response_of(arrays: dict[str, np.ndarray[Any, Any]]) -> InferenceResponse:
    return InferenceResponse(
        model_name="m",
        model_version="1",
        outputs=[encode(name, array) for name, array in arrays.items()],
    )


def test_binary_outputs_are_read_by_tritonclient() -> None:
    y = np.arange(4, dtype=np.int64).reshape(2, 2)
    p = np.array([0.25, 0.75], dtype=np.float32)
    labels = np.array(["a", "bé"], dtype=object)

    content, headers = encode_response(
        response_of({"y": y, "p": p, "labels": labels}), BinaryOutputs(named={"y": True})
    )
    result = triton.InferResult.from_response_body(
        content, header_length=int(headers["inference-header-content-length"])
    )

    assert headers["content-type"] == "application/octet-stream"
    assert np.array_equal(result.as_numpy("y"), y)
    assert np.array_equal(result.as_numpy("p"), p)  # JSON, next to the binary one
    assert result.as_numpy("labels").tolist() == ["a", "bé"]
    assert result.get_output("y")["parameters"] == {"binary_data_size": 32}
    assert "data" not in result.get_output("y")


def test_json_responses_stay_plain_json() -> None:
    content, headers = encode_response(response_of({"y": np.ones(2)}), BinaryOutputs())

    assert headers == {"content-type": "application/json"}
    assert json.loads(content)["outputs"][0]["data"] == [1.0, 1.0]


# --- round trips ---

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3)


@st.composite
def tensors(draw: st.DrawFn) -> np.ndarray[Any, Any]:
    datatype = draw(st.sampled_from([*DTYPES, "BYTES"]))
    shape = tuple(draw(shapes))
    count = int(np.prod(shape))
    if datatype == "BYTES":
        values = draw(st.lists(st.text(max_size=6), min_size=count, max_size=count))
        array = np.empty(count, dtype=object)
        array[:] = values
        return array.reshape(shape)
    dtype = np.dtype(DTYPES[datatype])
    raw = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    array = np.frombuffer(raw, dtype=np.uint8 if datatype == "BOOL" else dtype)
    return (
        (array % 2).astype(np.bool_).reshape(shape) if datatype == "BOOL" else array.reshape(shape)
    )


def same(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> bool:
    if a.dtype.kind == "f":
        return a.shape == b.shape and np.array_equal(a, b.astype(a.dtype), equal_nan=True)
    return a.shape == b.shape and a.tolist() == b.tolist()


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), tensors(), min_size=1))
def test_decode_of_what_tritonclient_encodes_round_trips(
    arrays: dict[str, np.ndarray[Any, Any]],
) -> None:
    sent = {
        k: (np.array([s.encode() for s in v.reshape(-1)], dtype=object).reshape(v.shape))
        if v.dtype == object
        else v
        for k, v in arrays.items()
    }
    body, length = triton_body(sent)

    request, _ = decode_request(body, length)

    for tensor in request.inputs:
        assert same(arrays[tensor.name], decode(tensor))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), tensors(), min_size=1), st.booleans())
def test_tritonclient_reads_back_what_encode_writes(
    arrays: dict[str, np.ndarray[Any, Any]], binary: bool
) -> None:
    if not binary:  # JSON has no inf or nan (they are written as null): binary carries them
        assume(all(a.dtype.kind != "f" or np.isfinite(a).all() for a in arrays.values()))
    content, headers = encode_response(response_of(arrays), BinaryOutputs(default=binary))
    length = headers.get("inference-header-content-length")

    result = triton.InferResult.from_response_body(
        content, header_length=None if length is None else int(length)
    )

    for name, array in arrays.items():
        back = result.as_numpy(name)
        if array.dtype == object:
            back = np.array(
                [v.decode() if isinstance(v, bytes) else v for v in back.reshape(-1)],
                dtype=object,
            ).reshape(back.shape)
        assert same(array, back), name


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["FP32", "INT8", "BOOL", "BYTES", "UINT64"]),
    st.lists(st.integers(-3, 2**40), max_size=3),
    st.integers(-5, 2**62),
    st.binary(max_size=64),
    st.integers(-2, 8),
)
def test_any_body_decodes_or_is_a_400(
    datatype: str, shape: list[int], size: int, data: bytes, skew: int
) -> None:
    header = {
        "inputs": [
            {
                "name": "x",
                "shape": shape,
                "datatype": datatype,
                "parameters": {"binary_data_size": size},
            }
        ]
    }
    body, length = raw_body(header, data)

    try:
        request, _ = decode_request(body, str(int(length) + skew))
    except ApiError as exc:
        assert exc.status == 400
    else:
        assert len(data) == size
        assert decode(request.inputs[0]).shape == tuple(shape)
