"""An idle edge serving models does not hold pyarrow; the first Arrow work loads it.

pyarrow and its shared libraries are some 40 MB of resident memory, and an edge that only
answers inference never builds an Arrow table: the store, ingest and sync import it where a
chunk, a body or a batch is built (issue 13, "Memory"; ``bench/serving.py`` measures the RSS).
The check reads the running agent's memory map, which names every shared library its process
has loaded, so it sees what the process really holds, not what a module promises.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from _fleet import assert_probabilities, infer, ingest, local_fleet, upload_and_deploy
from _models import train_classifier_onnx
from hybridai.demo.fleet import wait_for

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc/PID/maps (Linux)"
)


def _holds_arrow(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return "libarrow" in maps or "/pyarrow/" in maps


def test_an_idle_edge_loads_pyarrow_only_when_it_stores_records(tmp_path: Path) -> None:
    with local_fleet(tmp_path) as fleet:
        edge = fleet.start_edge("edge-1", "plant-a")
        fleet.wait_enrolled(1)
        version = upload_and_deploy(fleet, train_classifier_onnx())
        wait_for("the edge to serve pm", lambda: fleet.serving("pm", version), 90)
        for _ in range(20):
            assert_probabilities(infer(edge.url, {"placement": "edge"}))
        pid = edge.process.pid

        assert not _holds_arrow(pid), "an edge that only served inference loaded pyarrow"

        answer = ingest(edge.url, "telemetry", [{"ts": 1.7e9, "machine": "m01", "temp": 61.5}])
        assert answer.status_code == 200, answer.text
        assert answer.json()["accepted"] == 1
        assert _holds_arrow(pid)  # stored as an Arrow chunk: the check does see the library
