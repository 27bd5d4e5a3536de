"""Predictive maintenance as a measured use case: the plant's records and labelled benchmark,
and both models from the real pipeline judged on a plant no run saw."""

from __future__ import annotations

import numpy as np
import pytest
from _scenarios import commit_site

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.training import run_onnx, train
from hybridai.demo.scenarios import get
from hybridai.demo.scenarios.maintenance import Maintenance
from hybridai.demo.simulator import FEATURES, HORIZON_TICKS
from hybridai.protocol.registry import TrainingSpec


def test_plant_records_are_deterministic_and_failures_label_the_benchmark() -> None:
    case = get("pm")
    assert isinstance(case, Maintenance)
    site = case.sites[0]
    records = case.records(3, 400, site)
    assert records == case.records(3, 400, site) and records != case.records(4, 400, site)
    assert len(records["telemetry"]) == 400 * case.machines_per_site
    assert records["failures"], "machines fail within 400 ticks"
    holdout = case.holdout(5, 600)
    assert holdout.x.shape == ((600 - HORIZON_TICKS) * case.machines_per_site, len(FEATURES))
    assert 0.03 < holdout.y.mean() < 0.4  # failures are the minority
    perfect = case.quality(holdout, holdout.y.astype(float))
    assert perfect.value == pytest.approx(1.0) and perfect.details["roc_auc"] == 1.0
    chance = case.quality(holdout, np.full(len(holdout.y), 0.5))
    assert chance.value == pytest.approx(holdout.y.mean(), abs=1e-6)


@pytest.mark.timeout(300)
def test_the_pipeline_trains_both_variants_better_than_chance(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    case = Maintenance()
    lake = Lake(str(tmp_path_factory.mktemp("pm-lake")))
    site = case.sites[0]
    commit_site(lake, site.device, site.site, case.records(11, 1200, site), {})
    result = train(lake, TrainingSpec(**case.training_spec(0)))
    holdout = case.holdout(2_000, 800)
    quality = {
        v: case.quality(holdout, run_onnx(result.artifacts[v], holdout.x)[1][:, 1])
        for v in ("edge", "cloud")
    }
    print({v: (q.value, q.details) for v, q in quality.items()})
    for q in quality.values():
        assert q.value > 1.5 * holdout.y.mean()  # PR-AUC well above chance
        assert q.details["roc_auc"] > 0.65
    assert quality["cloud"].details["roc_auc"] > quality["edge"].details["roc_auc"]
