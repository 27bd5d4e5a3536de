from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from _models import SAMPLES as VALUES
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.tensors import decode, encode, numpy_dtype, v2_datatype
from hybridai.protocol.v2 import DATATYPES, RequestInput


def tensor(datatype: str, shape: list[int], data: list[Any], name: str = "x") -> RequestInput:
    return RequestInput.model_validate(
        {"name": name, "shape": shape, "datatype": datatype, "data": data}
    )


def decode_error(datatype: str, shape: list[int], data: list[Any]) -> ApiError:
    with pytest.raises(ApiError) as info:
        decode(tensor(datatype, shape, data, name="temperature"))
    assert info.value.status == 400
    assert "temperature" in info.value.message
    return info.value


def test_values_cover_every_datatype() -> None:
    assert set(VALUES) == set(DATATYPES)


@pytest.mark.parametrize("datatype", DATATYPES)
def test_round_trip_keeps_datatype_shape_and_values(datatype: str) -> None:
    values = VALUES[datatype]

    array = decode(tensor(datatype, [2, 2], values))
    output = encode("y", array)

    assert array.dtype == numpy_dtype(datatype)
    assert array.shape == (2, 2)
    assert output.datatype == datatype
    assert output.shape == [2, 2]
    assert output.data == values


@pytest.mark.parametrize("datatype", DATATYPES)
def test_nested_and_flat_data_decode_alike(datatype: str) -> None:
    values = VALUES[datatype]
    nested = [values[:2], values[2:]]

    flat_array = decode(tensor(datatype, [2, 2], values))
    nested_array = decode(tensor(datatype, [2, 2], nested))

    assert flat_array.tolist() == nested_array.tolist()
    assert nested_array.tolist() == nested


def test_deep_nesting_is_read_row_major() -> None:
    array = decode(tensor("INT32", [2, 1, 2], [[[1, 2]], [[3, 4]]]))

    assert array.shape == (2, 1, 2)
    assert array[1, 0, 0] == 3


def test_scalar_and_empty_tensors() -> None:
    scalar = decode(tensor("FP32", [], [2.5]))
    empty = decode(tensor("FP32", [0, 3], []))

    assert scalar.shape == ()
    assert float(scalar) == 2.5
    assert empty.shape == (0, 3)
    assert encode("e", empty).data == []


def test_integers_are_accepted_for_float_datatypes() -> None:
    array = decode(tensor("FP64", [2], [1, 2.5]))

    assert array.tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("shape", "data"),
    [([2, 2], [1, 2, 3]), ([3], [1, 2, 3, 4]), ([2, 2], [[1, 2], [3]]), ([1], [])],
)
def test_wrong_element_count_is_a_shape_mismatch(shape: list[int], data: list[Any]) -> None:
    error = decode_error("INT32", shape, data)

    assert error.code == ErrorCode.SHAPE_MISMATCH
    assert str(shape) in error.message


def test_negative_dimension_is_refused() -> None:
    error = decode_error("FP32", [-1, 2], [1.0, 2.0])

    assert error.code == ErrorCode.SHAPE_MISMATCH
    assert ">= 0" in error.message


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("BOOL", 1),
        ("BOOL", "true"),
        ("INT32", 1.5),
        ("INT32", True),
        ("UINT8", "7"),
        ("FP32", "1.0"),
        ("FP32", False),
        ("FP16", None),
        ("BYTES", 1),
        ("BYTES", None),
    ],
)
def test_wrong_element_type_is_a_datatype_mismatch(datatype: str, value: Any) -> None:
    error = decode_error(datatype, [2], [VALUES[datatype][0], value])

    assert error.code == ErrorCode.DATATYPE_MISMATCH
    assert datatype in error.message


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("UINT8", 256),
        ("UINT8", -1),
        ("UINT16", 2**16),
        ("UINT32", -1),
        ("UINT64", 2**64),
        ("UINT64", -1),
        ("INT8", 128),
        ("INT64", 2**63),
    ],
)
def test_integer_out_of_range_is_refused(datatype: str, value: int) -> None:
    error = decode_error(datatype, [1], [value])

    assert error.code == ErrorCode.DATATYPE_MISMATCH
    assert "out of range" in error.message


def test_encode_maps_numpy_strings_and_bytes_to_bytes() -> None:
    unicode = encode("u", np.array(["a", "bc"]))
    raw = encode("b", np.array([b"a", b"bc"], dtype=object))

    assert (unicode.datatype, unicode.data) == ("BYTES", ["a", "bc"])
    assert (raw.datatype, raw.data) == ("BYTES", ["a", "bc"])


def test_encode_flattens_row_major() -> None:
    output = encode("y", np.arange(6, dtype=np.int64).reshape(2, 3))

    assert output.shape == [2, 3]
    assert output.data == [0, 1, 2, 3, 4, 5]


def test_v2_datatype_refuses_numpy_types_without_a_v2_twin() -> None:
    with pytest.raises(ValueError, match="complex"):
        v2_datatype(np.dtype(np.complex64))
