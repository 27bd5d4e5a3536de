"""Predictive maintenance (the default demo's plant) as a measured use case.

The plant simulator (``demo/simulator.py``) is the labelled benchmark: its ground truth says
which readings came within ``HORIZON_TICKS`` of a failure, so the edge and cloud models and
their cascade are judged on a plant no run has seen, before and after one retraining round on
the hard examples the cascade escalated.
"""

from __future__ import annotations

from typing import Any

from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from hybridai.demo.scenarios.base import Array, Holdout, Quality, Records, Site, Sizes, UseCase
from hybridai.demo.simulator import Plant, labelled_holdout, pm_training_spec

START_TS = 1_767_225_600.0


class Maintenance(UseCase):
    name = "pm"
    title = "predictive maintenance"
    model = "pm"
    sites = (Site("plant-gw-1", "plant-a", "sensor-gateway"),)
    target_cloud_share = 0.15
    edge_budget_ms = 50.0
    machines_per_site = 8
    sizes = {
        "quick": Sizes(train_units=700, live_requests=400, holdout_units=800),
        "full": Sizes(train_units=1_500, live_requests=2_000, holdout_units=1_500),
    }

    def records(self, seed: int, units: int, site: Site) -> Records:
        ids = [f"{site.device}-m{i:02d}" for i in range(self.machines_per_site)]
        plant = Plant(ids, seed=seed, start_ts=START_TS)
        telemetry: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for _ in range(units):
            t, f = plant.step()
            telemetry += t
            failures += f
        return {"telemetry": telemetry, "failures": failures}

    def training_spec(self, seed: int) -> dict[str, Any]:
        return pm_training_spec(self.model, seed=seed).model_dump()

    def holdout(self, seed: int, units: int) -> Holdout:
        x, y = labelled_holdout(seed=seed, machines=self.machines_per_site, ticks=units)
        return Holdout(x, y)

    def quality(self, holdout: Holdout, scores: Array) -> Quality:
        return Quality(
            "pr_auc",
            float(average_precision_score(holdout.y, scores)),
            {
                "roc_auc": float(roc_auc_score(holdout.y, scores)),
                "f1": float(f1_score(holdout.y, scores >= 0.5, zero_division=0)),
                "positive_rate": float(holdout.y.mean()),
            },
        )
