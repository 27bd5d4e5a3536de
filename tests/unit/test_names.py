"""The one allow-list for outside names, and the escaping of names put into URLs."""

from __future__ import annotations

import pytest

from hybridai.protocol.names import InvalidName, check_file_name, check_name, v2_model_path


@pytest.mark.parametrize("value", ["pm", "PM-2", "model_v1.2", "1", "a" * 63])
def test_plain_names_pass(value: str) -> None:
    assert check_name("model name", value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        ".",
        "..",
        "a..b",
        ".hidden",
        "-x",
        "a/b",
        "a\\b",
        "pm\n",
        "pm\x00",
        "pm x",
        "été",
        "a" * 64,
    ],
)
def test_names_that_could_be_paths_or_odd_bytes_are_refused(value: str) -> None:
    with pytest.raises(InvalidName) as refused:
        check_name("stream", value)
    # The message names the kind and says what to send; it never echoes the value.
    assert str(refused.value) == str(InvalidName("stream"))
    assert "the stream is not a valid name" in str(refused.value)


def test_a_file_name_in_an_archive_is_a_relative_path_of_names() -> None:
    assert check_file_name("artifacts/edge.onnx") == "artifacts/edge.onnx"
    for bad in ("/etc/passwd", "artifacts/../x", "a//b", "", "artifacts/"):
        with pytest.raises(InvalidName):
            check_file_name(bad)


def test_v2_paths_escape_each_name_as_one_segment() -> None:
    assert v2_model_path("pm", None) == "/v2/models/pm"
    assert v2_model_path("pm", "2", "/infer") == "/v2/models/pm/versions/2/infer"
    assert v2_model_path("a/../b", "\x01") == "/v2/models/a%2F..%2Fb/versions/%01"
