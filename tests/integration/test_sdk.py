"""The Python SDK (``hybridai.edge.Client``) against a real edge process, README example included."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from _models import train_classifier_onnx
from hybridai.demo.lone_edge import LoneEdge
from hybridai.edge import Client, EdgeError
from hybridai.edge.agent import EdgeAgent
from hybridai.edge.app import create_app
from hybridai.edge.settings import EdgeSettings
from hybridai.serving.onnx_runtime import OnnxModel

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoneEdge]:
    with LoneEdge(tmp_path_factory.mktemp("sdk")) as running:
        yield running


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- sdk-example[^>]*-->\n```python\n(.*?)```", readme, re.S)
    assert found, "README lost its SDK example"
    return found.group(1)


@pytest.mark.slow
def test_the_readme_example_runs_against_a_real_edge(edge: LoneEdge) -> None:
    code = readme_example().replace("http://127.0.0.1:8500", edge.url)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    assert printed.getvalue().splitlines() == ["1 stored, 0 duplicates", "schema_mismatch", "1"]


@pytest.mark.slow
def test_writes_in_both_formats_land_once_and_errors_carry_the_edges_code(edge: LoneEdge) -> None:
    records = [{"ts": 1_710_000_000.0 + i, "line": "a", "count": i} for i in range(100)]
    with Client(edge.url) as packed, Client(edge.url, format="json") as plain:
        first = packed.write("counts", records)
        again = plain.write("counts", records)  # the same records as JSON: all duplicates
        assert (first.accepted, first.duplicates) == (100, 0)
        assert (again.accepted, again.duplicates) == (0, 100)

        with pytest.raises(EdgeError) as refused:
            packed.write("counts", [{"ts": 1.0, "count": "many"}])
        assert (refused.value.status, refused.value.code) == (400, "schema_mismatch")
        assert "count" in refused.value.message
        with pytest.raises(EdgeError) as no_ts:
            packed.write("counts", [{"line": "b"}])
        assert no_ts.value.code == "invalid_input"
        with pytest.raises(EdgeError) as bad_name:
            packed.write("Not A Stream", records[:1])
        assert bad_name.value.code == "invalid_name"  # one allow-list for names (issue 11.4)
        with pytest.raises(EdgeError) as no_model:
            packed.infer("absent", np.zeros((1, 4), dtype=np.float32))
        assert no_model.value.code in ("model_not_found", "upstream_unavailable")

        assert packed.status()["store"]["records_ingested"] >= 100


def test_an_edge_that_does_not_answer_is_a_clear_error() -> None:
    with Client("http://127.0.0.1:9", timeout=2) as nowhere, pytest.raises(EdgeError) as error:
        nowhere.write("telemetry", [{"ts": 1.0}])
    assert error.value.code == "unreachable" and "127.0.0.1:9" in str(error.value)


def test_infer_returns_numpy_arrays_by_output_name(tmp_path: Path) -> None:
    settings = EdgeSettings(
        data_dir=tmp_path, device_id="gw-1", cloud_url="https://127.0.0.1:9", lan_auth="open"
    )
    agent = EdgeAgent(settings)
    agent.repository.put(OnnxModel.load("clf", "1", train_classifier_onnx()))
    try:
        with Client("http://testserver", http=TestClient(create_app(agent))) as edge:
            rows = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
            outputs = edge.infer("clf", {"input": rows}, parameters={"placement": "edge"})
        assert outputs["label"].dtype == np.int64 and outputs["label"].shape == (5,)
        assert outputs["probabilities"].dtype == np.float32
        assert outputs["probabilities"].shape == (5, 2)
        assert np.allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-5)
    finally:
        agent.store.close()
