"""The predictive-maintenance plant: seeded, plausible, and labelled the same way as the lake."""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from hybridai.demo.simulator import (
    FEATURES,
    HORIZON_S,
    HORIZON_TICKS,
    PM_TRAINING_QUERY,
    Plant,
    labelled_holdout,
    pm_training_query,
    pm_training_spec,
)

MACHINES = [f"m{i}" for i in range(8)]


def run(plant: Plant, ticks: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    telemetry: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    for _ in range(ticks):
        t, f = plant.step()
        telemetry += t
        failures += f
    return telemetry, failures


def test_same_seed_same_plant_other_seed_other_plant() -> None:
    first = run(Plant(MACHINES, seed=3, start_ts=0.0), 50)
    second = run(Plant(MACHINES, seed=3, start_ts=0.0), 50)
    other = run(Plant(MACHINES, seed=4, start_ts=0.0), 50)

    assert first == second
    assert first != other


def test_step_emits_one_rounded_reading_per_machine_at_the_tick() -> None:
    plant = Plant(["a", "b"], seed=0, start_ts=1000.0, tick_s=30.0)

    plant.step()
    telemetry, _ = plant.step()

    assert [r["machine_id"] for r in telemetry] == ["a", "b"]
    for record in telemetry:
        assert set(record) == {"ts", "machine_id", *FEATURES}
        assert record["ts"] == 1030.0
        for name in FEATURES:
            assert isinstance(record[name], float)
            assert record[name] == round(record[name], 4)
    assert plant.ts == 1060.0


def test_machines_fail_every_150_to_400_ticks() -> None:
    plant = Plant(MACHINES, seed=1, start_ts=0.0)
    last: dict[str, int] = {}
    gaps: list[int] = []

    for tick in range(3000):
        _, failures = plant.step()
        for event in failures:
            assert event == {
                "ts": float(tick * 60),
                "machine_id": event["machine_id"],
                "kind": "failure",
            }
            if event["machine_id"] in last:
                gaps.append(tick - last[event["machine_id"]])
            last[event["machine_id"]] = tick

    assert set(last) == set(MACHINES)
    assert 150 <= float(np.median(gaps)) <= 400
    assert min(gaps) >= 80


def test_sensors_drift_as_a_machine_wears_out() -> None:
    features, labels = labelled_holdout(seed=5)

    before_failure = features[labels == 1].mean(axis=0)
    healthy = features[labels == 0].mean(axis=0)

    vibration, temperature, _, rpm = (
        FEATURES.index(f) for f in ("vibration", "temperature", "pressure", "rpm")
    )
    assert before_failure[vibration] > healthy[vibration]
    assert before_failure[temperature] > healthy[temperature]
    assert before_failure[rpm] < healthy[rpm]


def test_labelled_holdout_drops_the_unlabelled_tail() -> None:
    features, labels = labelled_holdout(seed=2, machines=4, ticks=200, horizon_ticks=20)

    assert features.shape == (180 * 4, 4)
    assert features.dtype == np.float32
    assert labels.shape == (180 * 4,)
    assert set(np.unique(labels).tolist()) <= {0, 1}
    assert 0 < labels.mean() < 0.3


def test_labelled_holdout_needs_more_ticks_than_the_horizon() -> None:
    with pytest.raises(ValueError, match="ticks must exceed"):
        labelled_holdout(seed=0, ticks=30, horizon_ticks=30)


@pytest.mark.parametrize(
    ("ids", "tick_s", "message"),
    [([], 60.0, "at least one"), (["a", "a"], 60.0, "unique"), (["a"], 0.0, "tick_s")],
)
def test_bad_plants_are_refused(ids: list[str], tick_s: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Plant(ids, seed=0, start_ts=0.0, tick_s=tick_s)


def test_training_query_labels_like_the_ground_truth() -> None:
    plant = Plant(["a", "b", "c"], seed=7, start_ts=0.0)
    telemetry, failures = run(plant, 600)
    ticks = {r["ts"] for r in telemetry}
    connection = duckdb.connect()
    connection.register("telemetry", pa.Table.from_pylist(telemetry))
    connection.register("failures", pa.Table.from_pylist(failures))

    rows = connection.sql(PM_TRAINING_QUERY).to_arrow_table().to_pylist()

    assert len(rows) == 3 * (len(ticks) - HORIZON_TICKS)
    assert set(rows[0]) == {*FEATURES, "machine_id", "label"}
    fail_ts = {(f["machine_id"], f["ts"]) for f in failures}
    by_key = {(r["machine_id"], r["ts"]): r for r in telemetry}
    expected_positive = 0
    for key, record in by_key.items():
        machine, ts = key
        if ts > max(ticks) - HORIZON_S:
            continue
        expected_positive += any(
            (machine, ts + k * 60.0) in fail_ts for k in range(1, HORIZON_TICKS + 1)
        )
        assert record["vibration"] is not None
    assert sum(r["label"] for r in rows) == expected_positive > 0


def test_holdout_and_training_query_agree_on_labels() -> None:
    features, labels = labelled_holdout(seed=11, machines=3, ticks=400)
    telemetry, failures = run(Plant(["m000", "m001", "m002"], seed=11, start_ts=0.0), 400)
    connection = duckdb.connect()
    connection.register("telemetry", pa.Table.from_pylist(telemetry))
    connection.register("failures", pa.Table.from_pylist(failures))

    rows = connection.sql(PM_TRAINING_QUERY).to_arrow_table()

    # the holdout is tick-major, the query machine-major: compare as multisets of rows
    from_query = sorted(
        (*(float(np.float32(v)) for v in row[:4]), row[4])
        for row in zip(*(rows.column(c).to_pylist() for c in (*FEATURES, "label")), strict=True)
    )
    from_holdout = sorted(
        (*row, label) for row, label in zip(features.tolist(), labels.tolist(), strict=True)
    )
    assert from_query == from_holdout


def test_training_query_horizon_is_a_parameter() -> None:
    assert "1800.0" in PM_TRAINING_QUERY
    assert "600.0" in pm_training_query(600.0)


def test_pm_training_spec() -> None:
    spec = pm_training_spec(model_name="pm-line-2", seed=9)

    assert spec.model_name == "pm-line-2"
    assert spec.seed == 9
    assert spec.features == list(FEATURES)
    assert (spec.label, spec.group) == ("label", "machine_id")
    assert (spec.edge_family, spec.cloud_family) == ("tree", "gbm")
    assert spec.query == PM_TRAINING_QUERY
