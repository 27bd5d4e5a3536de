"""The training job on a real lake filled by the plant simulator, scored with ONNX Runtime."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
import sklearn

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.training import TrainingError, TrainingResult, train
from hybridai.demo.simulator import Plant, labelled_holdout, pm_training_spec
from hybridai.protocol.registry import TrainingSpec

DEVICE, SITE = "gw-1", "plant-a"
MACHINES = [f"m{i:02d}" for i in range(12)]


def as_batch(records: list[dict[str, Any]], first_id: int) -> pa.Table:
    """Records with the sync columns an edge adds before upload."""
    rows = [
        {
            **record,
            "record_id": f"{DEVICE}:{first_id + i}",
            "device_id": DEVICE,
            "site": SITE,
            "date": dt.datetime.fromtimestamp(record["ts"], dt.UTC).strftime("%Y-%m-%d"),
        }
        for i, record in enumerate(records)
    ]
    return pa.Table.from_pylist(rows)


class Uploader:
    """Plays an edge: steps the plant and commits telemetry and failures batch by batch."""

    def __init__(self, lake: Lake, plant: Plant) -> None:
        self.lake, self.plant = lake, plant
        self.seq = {"telemetry": 0, "failures": 0}
        self.next_id = 0

    def send(self, batches: int, ticks: int) -> None:
        for _ in range(batches):
            telemetry: list[dict[str, Any]] = []
            failures: list[dict[str, Any]] = []
            for _ in range(ticks):
                t, f = self.plant.step()
                telemetry += t
                failures += f
            for stream, records in (("telemetry", telemetry), ("failures", failures)):
                if records:
                    self.seq[stream] += 1
                    table = as_batch(records, self.next_id)
                    self.next_id += len(records)
                    self.lake.commit_batch(stream, DEVICE, self.seq[stream], table)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Uploader]:
    lake = Lake(str(tmp_path_factory.mktemp("lake")))
    uploader = Uploader(lake, Plant(MACHINES, seed=1, start_ts=1_700_000_000.0))
    uploader.send(batches=4, ticks=150)
    return lake, uploader


@pytest.fixture(scope="module")
def result(filled: tuple[Lake, Uploader]) -> TrainingResult:
    return train(filled[0], pm_training_spec(seed=0))


def test_cloud_variant_is_at_least_as_good_as_the_edge_variant(result: TrainingResult) -> None:
    edge, cloud = result.metrics["edge"], result.metrics["cloud"]

    assert cloud["roc_auc"] >= edge["roc_auc"]
    assert edge["roc_auc"] > 0.75
    assert cloud["size_bytes"] > edge["size_bytes"]


def test_metrics_are_in_range(result: TrainingResult) -> None:
    assert set(result.metrics) == {"edge", "cloud"}
    for metrics in result.metrics.values():
        for name in ("accuracy", "f1", "roc_auc", "precision", "recall", "positive_rate"):
            assert 0.0 <= metrics[name] <= 1.0, name
        assert metrics["n_test"] == result.lineage["rows"]["test"]
        assert 0 < metrics["positive_rate"] < 0.5
        assert metrics["size_bytes"] > 0


def test_artifacts_are_onnx_classifiers_with_the_agreed_signature(result: TrainingResult) -> None:
    features, labels = labelled_holdout(seed=99, machines=4, ticks=300)

    for variant, artifact in result.artifacts.items():
        session = ort.InferenceSession(artifact, providers=["CPUExecutionProvider"])
        inputs, outputs = session.get_inputs(), session.get_outputs()
        assert [(i.name, i.type, i.shape[1]) for i in inputs] == [("input", "tensor(float)", 4)]
        assert [(o.name, o.type) for o in outputs] == [
            ("label", "tensor(int64)"),
            ("probabilities", "tensor(float)"),
        ]
        label, probabilities = session.run(None, {"input": features})
        assert probabilities.shape == (len(labels), 2), variant
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert set(np.unique(label).tolist()) <= {0, 1}
        assert len(artifact) == result.metrics[variant]["size_bytes"]


def test_lineage_rereads_the_same_rows_after_more_data(
    filled: tuple[Lake, Uploader], result: TrainingResult
) -> None:
    lake, uploader = filled
    lineage = result.lineage
    before = lake.versions()

    uploader.send(batches=1, ticks=100)

    assert lake.versions() != before
    assert lineage["table_versions"] == before
    again = lake.query(lineage["query"], versions=lineage["table_versions"])
    now = lake.query(lineage["query"])
    assert again.num_rows == lineage["rows"]["total"]
    assert now.num_rows > again.num_rows


def test_lineage_describes_the_run(result: TrainingResult) -> None:
    lineage = result.lineage

    rows = lineage["rows"]
    assert rows["train"] + rows["validation"] + rows["test"] == rows["total"]
    assert rows["validation"] > 0
    validation_groups = set(lineage["validation_split"]["validation_groups"])
    assert validation_groups and not validation_groups & set(lineage["split"]["test_groups"])
    assert lineage["rows"]["dropped_null"] == 0
    assert lineage["sklearn_version"] == sklearn.__version__
    assert lineage["spec"] == pm_training_spec(seed=0).model_dump()
    assert lineage["split"]["kind"] == "group"
    held_out = set(lineage["split"]["test_groups"])
    assert held_out and held_out < set(MACHINES)
    assert lineage["onnx"]["input"] == "input"
    json.dumps(lineage)  # stored as JSON by the registry


def test_same_data_and_seed_give_the_same_metrics(tmp_path: Path) -> None:
    def run(folder: str) -> dict[str, dict[str, float]]:
        lake = Lake(str(tmp_path / folder))
        Uploader(lake, Plant(MACHINES[:6], seed=4, start_ts=0.0)).send(batches=2, ticks=150)
        spec = pm_training_spec(seed=3).model_copy(update={"cloud_family": "logistic"})
        return train(lake, spec).metrics

    assert run("first") == run("second")


@pytest.mark.parametrize("family", ["logistic", "tree", "forest", "gbm"])
def test_every_family_trains_with_a_stratified_split(tmp_path: Path, family: str) -> None:
    spec = spec_with(
        "SELECT i AS x, (i * 7919) % 13 AS z, CAST(i % 4 = 0 AS INT) AS y FROM range(400) t(i)",
        features=["x", "z"],
        edge_family=family,
        cloud_family=family,
    )

    outcome = train(Lake(str(tmp_path)), spec)

    assert outcome.lineage["split"] == {"kind": "stratified", "seed": 0}
    assert outcome.lineage["rows"] == {
        "total": 400,
        "train": 240,
        "validation": 60,
        "test": 100,
        "dropped_null": 0,
    }
    assert outcome.metrics["edge"]["positive_rate"] == 0.25
    assert outcome.metrics["edge"] == outcome.metrics["cloud"]


def test_empty_lake_is_a_training_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"training query failed.*telemetry"):
        train(Lake(str(tmp_path)), pm_training_spec())


def spec_with(query: str, **update: Any) -> TrainingSpec:
    return TrainingSpec.model_validate(
        {"model_name": "t", "query": query, "features": ["x"], "label": "y", **update}
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (spec_with("SELECT i AS x, i % 2 AS y FROM range(10) t(i)"), "10 usable rows"),
        (spec_with("SELECT i AS x, 0 AS y FROM range(100) t(i)"), "every row has label 0"),
        (
            spec_with("SELECT i AS x, (i % 3) * 2 AS y FROM range(100) t(i)"),
            r"0\.\.2 without gaps, got \[0, 2, 4\]",
        ),
        (spec_with("SELECT i AS x, 'cat' || (i % 2) AS y FROM range(100) t(i)"), "not class num"),
        (spec_with("SELECT i AS x, (i % 2) / 2 AS y FROM range(100) t(i)"), "fractions"),
        (spec_with("SELECT i AS x, (i % 2) - 1 AS y FROM range(100) t(i)"), "negative"),
        (spec_with("SELECT i AS x FROM range(100) t(i)"), "does not return column.*y"),
        (spec_with("SELECT 'a' || i AS x, i % 2 AS y FROM range(100) t(i)"), "numeric"),
        (
            spec_with("SELECT i AS x, i % 2 AS y, 'one' AS g FROM range(100) t(i)", group="g"),
            "two distinct groups",
        ),
        (
            spec_with(
                "SELECT i AS x, CAST(i % 10 = 0 AS INT) AS y, i % 10 AS g FROM range(100) t(i)",
                group="g",
            ),
            "every class on both sides",
        ),
        (spec_with("SELECT i AS x, CAST(i = 0 AS INT) AS y FROM range(100) t(i)"), "cannot split"),
        (spec_with("SELECT nonsense"), "training query failed"),
    ],
)
def test_unusable_data_is_a_training_error(
    tmp_path: Path, spec: TrainingSpec, message: str
) -> None:
    with pytest.raises(TrainingError, match=message):
        train(Lake(str(tmp_path)), spec)


def test_rows_with_nulls_are_dropped_and_counted(tmp_path: Path) -> None:
    spec = spec_with(
        "SELECT CASE WHEN i % 10 = 0 THEN NULL ELSE i END AS x, i % 2 AS y FROM range(200) t(i)",
        edge_family="logistic",
        cloud_family="tree",
    )

    outcome = train(Lake(str(tmp_path)), spec)

    assert outcome.lineage["rows"]["dropped_null"] == 20
    assert outcome.lineage["rows"]["total"] == 180
    assert outcome.lineage["table_versions"] == {}
