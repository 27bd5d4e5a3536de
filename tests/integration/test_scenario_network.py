"""Network and IT monitoring: the metrics generator and its labelled anomalies, NAB-style
scoring, models from the real pipeline, cloud trend analytics, and the demo end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _scenarios import commit_site, demo_json

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.training import run_onnx, train
from hybridai.demo.scenarios.base import Holdout
from hybridai.demo.scenarios.network import (
    INCIDENTS_QUERY,
    KINDS,
    TREND_QUERY,
    Network,
    alerts,
    host_series,
    nab_score,
)
from hybridai.protocol.registry import TrainingSpec


def test_host_series_are_deterministic_with_labelled_anomalies_of_every_kind() -> None:
    records, incidents, label = host_series(5, 3000, "h-1", "dc")
    again, _, _ = host_series(5, 3000, "h-1", "dc")
    assert records == again and records != host_series(6, 3000, "h-1", "dc")[0]
    assert len(records) == len(label) == 3000
    assert 0.03 < label.mean() < 0.35  # anomalies are the minority
    kinds = set()
    for seed in range(8):
        _, incidents, label = host_series(seed, 3000, "h", "dc")
        kinds |= {i["kind"] for i in incidents}
        for incident in incidents:  # each ticket covers exactly its labelled ticks
            first = round((incident["start_ts"] - records[0]["ts"]) / 300)
            last = round((incident["end_ts"] - records[0]["ts"]) / 300)
            assert label[first : last + 1].all()
            assert first == 0 or not label[first - 1]
    assert kinds == set(KINDS)


def test_anomalies_show_in_the_features_the_edge_computes() -> None:
    records, incidents, label = host_series(9, 3000, "h", "dc")

    def mean(feature: str, flag: int) -> float:
        return float(
            np.mean([r[feature] for r, y in zip(records, label, strict=True) if y == flag])
        )

    assert mean("traffic_vs_yesterday", 1) > mean("traffic_vs_yesterday", 0) + 0.2
    assert mean("latency_ratio", 1) > mean("latency_ratio", 0)
    assert mean("traffic_z", 1) > mean("traffic_z", 0)
    slope = np.asarray([r["mem_slope"] for r in records])
    leaks = [i for i in incidents if i["kind"] == "leak"]
    if leaks:
        assert slope[label == 1].mean() > slope[label == 0].mean()


def test_nab_scores_early_detection_best_and_false_alarms_below_it() -> None:
    y = np.zeros(1000, dtype=np.int64)
    y[500:540] = 1
    y[800:820] = 1
    holdout = Holdout(np.zeros((1000, 1)), y, np.zeros(1000))
    perfect = np.asarray(y, dtype=float)
    noisy = perfect.copy()
    noisy[200:1000:40] = 1.0  # a false alarm every 40 ticks
    assert nab_score(holdout, perfect) > 90
    assert nab_score(holdout, np.zeros(1000)) == 0
    assert nab_score(holdout, perfect) > nab_score(holdout, noisy)
    assert alerts(np.asarray([0, 1, 1, 1, 0, 0, 1] + [0] * 20 + [1], dtype=bool), quiet=3) == [
        1,
        27,
    ]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    case = Network()
    lake = Lake(str(tmp_path_factory.mktemp("net-lake")))
    for n, site in enumerate(case.sites):
        commit_site(lake, site.device, site.site, case.records(100 + n, 1500, site), {})
    return lake


def test_the_pipeline_trains_detectors_that_find_anomalies_on_unseen_hosts(lake: Lake) -> None:
    case = Network()
    result = train(lake, TrainingSpec(**case.training_spec(0)))
    assert result.lineage["split"]["kind"] == "group"  # judged on hosts never trained on
    holdout = case.holdout(2_000, 1_500)
    quality = {
        v: case.quality(holdout, run_onnx(result.artifacts[v], holdout.x)[1][:, 1])
        for v in ("edge", "cloud")
    }
    print({v: (q.value, q.details) for v, q in quality.items()})
    for q in quality.values():
        assert q.value > 30  # NAB: well above a detector that never fires (0)
        assert q.details["pr_auc"] > 2 * q.details["anomaly_rate"]  # twice chance at least
    assert quality["cloud"].details["pr_auc"] > max(0.6, quality["edge"].details["pr_auc"])


def test_cloud_trend_analytics_over_the_lake(lake: Lake) -> None:
    trend = lake.query(TREND_QUERY).to_pylist()
    assert len(trend) == Network.hosts_per_site
    assert all(row["ticks"] == 1500 and row["p95_mbps"] > row["mean_mbps"] for row in trend)
    incidents = {r["kind"]: r["incidents"] for r in lake.query(INCIDENTS_QUERY).to_pylist()}
    assert set(incidents) <= set(KINDS) and sum(incidents.values()) > 10


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_scenario_network_end_to_end(tmp_path: Path) -> None:
    summary = demo_json("network", tmp_path / "demo")
    print({k: summary[k] for k in ("edge_quality", "cloud_quality", "cascade_quality", "wall_s")})
    assert summary["scenario"] == "network" and summary["metric"] == "nab_score"
    assert summary["edge_quality"] > 30 and summary["cascade_quality"] > 30
    assert summary["details"]["cloud"]["pr_auc"] > summary["details"]["edge"]["pr_auc"]
    assert 0.02 < summary["cloud_share"] < 0.25  # calibrated at 10% on other hosts
    assert summary["live_agreement"] > 0.99
    assert 0 < summary["wire_ratio"] < 0.5
    trend = summary["analytics"]["traffic trend per host"]
    assert len(trend["rows"]) == Network.hosts_per_site and "mbps_per_day" in trend["columns"]
    assert summary["retraining"]["hard_examples"] > 0
