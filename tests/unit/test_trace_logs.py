"""W3C traceparent parsing and the JSON log line: the request id's two ends, without processes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from hybridai.observability import logs, trace


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "00-0af7651916cd43dd8448eb211c80319c",  # no span
        "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # unknown version
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        "00-0af7651916cd43dd8448eb211c8031zz-b7ad6b7169203331-01",  # not hex
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(header: str | None) -> None:
    assert trace.parse(header) is None
    span = trace.begin(header)
    assert len(span.trace_id) == 32 and span.trace_id != "0" * 32


def test_a_valid_traceparent_is_continued_with_a_new_span() -> None:
    header = "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"
    span = trace.begin(header)
    assert span.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert span.span_id != "b7ad6b7169203331"
    assert trace.outgoing() == {"traceparent": span.traceparent}


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    logs.setup("info", "json")
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_time_level_component_and_the_request(captured: io.StringIO) -> None:
    span = trace.begin(None)
    trace.set_model("pm")
    trace.set_device("edge-7")
    logging.getLogger("hybridai.test").info("hello %s", "there", extra={"route": "/x/{id}"})
    line = json.loads(captured.getvalue().splitlines()[-1])
    assert line["level"] == "info" and line["component"] == "hybridai.test"
    assert line["message"] == "hello there" and line["route"] == "/x/{id}"
    assert line["trace_id"] == span.trace_id
    assert line["device"] == "edge-7" and line["model"] == "pm"
    assert line["ts"].endswith("Z")


def test_a_wrong_log_format_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.FORMAT_ENV, "xml")
    with pytest.raises(ValueError, match="use text or json"):
        logs.log_format()


def test_a_wrong_log_level_is_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(logs.LEVEL_ENV, "loud")
    with pytest.raises(ValueError, match="use debug, info, warning or error"):
        logs.setup(fmt="text")
