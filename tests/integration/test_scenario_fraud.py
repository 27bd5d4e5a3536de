"""Fraud scoring in branches: the generator, its models from the real pipeline, the data policy
keeping card numbers on site, and ``hybridai demo --scenario fraud`` end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _scenarios import commit_site, demo_json
from typer.testing import CliRunner

from hybridai.cli.main import app
from hybridai.cloud.data.lake import Lake
from hybridai.cloud.pipelines.training import run_onnx, train
from hybridai.demo.scenarios import get
from hybridai.demo.scenarios.fraud import FEATURES, Fraud, at_alert_rate, transactions
from hybridai.protocol.registry import TrainingSpec


def luhn_ok(pan: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def test_transactions_are_deterministic_labelled_and_imbalanced() -> None:
    txns, chargebacks = transactions(3, 20_000, "branch-x")
    again, _ = transactions(3, 20_000, "branch-x")
    other, _ = transactions(4, 20_000, "branch-x")
    assert txns == again and txns != other

    fraud = {c["txn_id"] for c in chargebacks}
    ids = [t["txn_id"] for t in txns]
    assert len(set(ids)) == len(ids) and fraud <= set(ids)
    assert 0.002 <= len(fraud) / len(txns) <= 0.01  # ~0.5%: heavily imbalanced
    assert all(len(t["card_number"]) == 16 and luhn_ok(t["card_number"]) for t in txns)
    assert all(c["ts"] > 0 for c in chargebacks)

    def share(feature: str, flag: bool) -> float:
        rows = [t[feature] for t in txns if (t["txn_id"] in fraud) == flag]
        return float(np.mean(rows))

    # Each pattern leaves its mark on the features the branch computes, more on fraud.
    for feature in ("new_device", "small_amount", "night", "new_category", "velocity_10min"):
        assert share(feature, True) > 2 * share(feature, False), feature
    big = [t["amount_ratio"] for t in txns if t["txn_id"] in fraud and not t["small_amount"]]
    assert np.mean(big) > share("amount_ratio", False) + 1  # spikes vs the card's history


def test_precision_and_recall_at_an_alert_rate() -> None:
    y = np.asarray([1, 0, 0, 1] + [0] * 96)
    scores = np.linspace(1, 0, 100)  # rows in score order: the first two flagged at 2%
    assert at_alert_rate(y, scores, 0.02) == (0.5, 0.5)
    assert at_alert_rate(y, scores, 0.04) == (0.5, 1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    case = Fraud()
    lake = Lake(str(tmp_path_factory.mktemp("fraud-lake")))
    pans: set[str] = set()
    for n, site in enumerate(case.sites):
        records = case.records(100 + n, 12_000, site)
        pans |= {t["card_number"] for t in records["transactions"]}
        commit_site(lake, site.device, site.site, records, case.policies())
    result = train(lake, TrainingSpec(**case.training_spec(0)))
    return {"lake": lake, "result": result, "pans": pans}


def test_the_pipeline_trains_an_edge_tree_and_a_better_cloud_model(
    trained: dict[str, object],
) -> None:
    case, result = Fraud(), trained["result"]
    holdout = case.holdout(2_000, 20_000)
    quality = {
        v: case.quality(holdout, run_onnx(result.artifacts[v], holdout.x)[1][:, 1])  # type: ignore[attr-defined]
        for v in ("edge", "cloud")
    }
    print({v: (q.value, q.details) for v, q in quality.items()})
    assert quality["cloud"].value > quality["edge"].value + 0.1  # PR-AUC
    assert quality["cloud"].value > 0.6
    assert quality["edge"].details["roc_auc"] > 0.85
    assert quality["cloud"].details["recall_at_alert_rate"] > 0.6
    lineage = result.lineage  # type: ignore[attr-defined]
    assert lineage["split"]["kind"] == "group"  # held-out cards were never trained on
    assert lineage["onnx"]["n_features"] == len(FEATURES)


def test_the_lake_never_holds_a_card_number_or_a_cardholder(trained: dict[str, object]) -> None:
    lake: Lake = trained["lake"]  # type: ignore[assignment]
    pans: set[str] = trained["pans"]  # type: ignore[assignment]
    table = lake.query("SELECT * FROM transactions")
    assert "cardholder" not in table.column_names
    stored = set(table.column("card_number").to_pylist())
    assert not stored & pans
    assert all(v.startswith("ps:") for v in stored)
    # Pseudonyms are stable: one card, one pseudonym, so per-card analytics still work.
    assert len(stored) == len(pans)
    for column in table.column_names:
        values = {str(v) for v in table.column(column).to_pylist()}
        assert not values & pans, column
    check = Fraud().lake_checks({})["raw card numbers in the lake"]
    assert lake.query(check).column(0).to_pylist() == [0]


def test_an_unknown_scenario_is_refused_with_the_known_ones() -> None:
    result = CliRunner().invoke(app, ["demo", "--scenario", "nope"])
    assert result.exit_code == 2
    assert "pm, fraud, network" in result.output
    listed = CliRunner().invoke(app, ["demo", "--scenario", "list"])
    assert listed.exit_code == 0 and "fraud" in listed.output and "network" in listed.output
    with pytest.raises(KeyError, match="choose one of"):
        get("nope")


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_demo_scenario_fraud_end_to_end(tmp_path: Path) -> None:
    summary = demo_json("fraud", tmp_path / "demo")
    print({k: summary[k] for k in ("edge_quality", "cloud_quality", "cascade_quality", "wall_s")})
    assert summary["scenario"] == "fraud" and summary["metric"] == "pr_auc"
    assert summary["records_ingested"]["transactions"] == 24_000
    assert summary["lake_checks"] == {"raw card numbers in the lake": 0}
    assert summary["cloud_quality"] > summary["edge_quality"]
    assert summary["cascade_quality"] > summary["edge_quality"]
    assert abs(summary["cloud_share"] - 0.05) < 0.03
    assert summary["live_agreement"] > 0.99  # the edges apply the calibrated rule
    assert summary["live_degraded"] == 0
    assert 0 < summary["wire_ratio"] < 0.2  # synced Parquet and escalations vs raw JSON
    assert summary["edge_p50_ms"] is not None and summary["edge_p99_ms"] >= summary["edge_p50_ms"]
    retraining = summary["retraining"]  # escalations labelled by their chargebacks
    assert retraining["lineage"]["label_source"] == "human-else-cloud"
    assert retraining["lineage"]["labelled"]["by_human"] == retraining["hard_examples"] > 0
    assert not (tmp_path / "demo").exists()
