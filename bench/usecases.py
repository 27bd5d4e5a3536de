"""The shipped use cases, measured: edge, cloud and cascade quality, latency, bytes to the cloud.

One real local fleet (cloud and each case's edges as processes over loopback) plays every use
case of ``hybridai demo --scenario`` (``demo/scenarios/runner.py``): records in through the
edges, synced through the data policy, both models trained by the platform's pipeline, the
cascade calibrated at the case's cloud share, field requests one row at a time, one
retraining round on the escalated hard examples. Per scenario S:

- ``S.edge_quality`` / ``S.cloud_quality`` / ``S.cascade_quality``: the case's headline metric
  on a labelled holdout no run saw (fraud: PR-AUC; network: NAB score, 0..100; pm: PR-AUC).
  Edge-only and cloud-only are the baselines of the cascade, measured in the same run.
- ``S.cloud_share``: the share of holdout rows the calibrated rule escalates
  (``S.live_cloud_share``: of the live requests).
- ``S.edge_p50_ms`` / ``S.edge_p99_ms``: a client's round trip to the edge for requests
  answered there (loopback HTTP, one row each).
- ``S.wire_ratio``: bytes sent to the cloud (synced Parquet, hard examples included, plus
  escalated request bodies) over the raw JSON of every record and request.
- ``S.edge_quality_after_retraining``: the edge model after one round on hard examples.

Usage: python bench/usecases.py [--quick] [--only fraud,network,pm]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import show, write

from hybridai.demo.fleet import LocalFleet
from hybridai.demo.scenarios import SCENARIOS, get
from hybridai.demo.scenarios.runner import Run

KEYS = (
    "edge_quality",
    "cloud_quality",
    "cascade_quality",
    "cloud_share",
    "live_cloud_share",
    "edge_p50_ms",
    "edge_p99_ms",
    "wire_ratio",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer requests")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    size = "quick" if args.quick else "full"
    metrics: dict[str, float] = {}
    notes: dict[str, Any] = {"size": size, "seed": args.seed, "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="hybridai-usecases-") as tmp:
        fleet = LocalFleet(Path(tmp))
        try:
            fleet.start_cloud()
            for name in args.only.split(","):
                summary = Run(fleet, get(name), size, args.seed, on_phase=print).play()
                for key in KEYS:
                    if summary[key] is not None:
                        metrics[f"{name}.{key}"] = float(summary[key])
                retraining = summary["retraining"]
                metrics[f"{name}.edge_quality_after_retraining"] = retraining["edge_quality_after"]
                metrics[f"{name}.hard_examples"] = float(retraining["hard_examples"])
                for check, count in summary["lake_checks"].items():
                    notes.setdefault("lake_checks", {})[f"{name}: {check}"] = count
                notes["scenarios"][name] = {
                    k: summary[k]
                    for k in (
                        "metric",
                        "details",
                        "records_ingested",
                        "edge_budget_ms",
                        "live_agreement",
                        "live_degraded",
                        "live_decided_by",
                        "wire_bytes",
                        "raw_bytes",
                        "holdout_rows",
                        "phases_s",
                        "wall_s",
                    )
                }
        finally:
            fleet.close()
    path = write("usecases", args.quick, metrics, notes)
    show(f"use cases ({size}) -> {path}", metrics)


if __name__ == "__main__":
    main()
