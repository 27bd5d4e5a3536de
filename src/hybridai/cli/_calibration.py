"""How `hybridai model calibrate` shows a calibration: every figure under the split it came from.

The threshold is fitted on the validation split, so the curve, edge-alone and cloud-alone
accuracy, CPT and APGR describe that split; only the chosen threshold is also measured on the
held-out test split. Showing a validation figure next to the test line unlabelled would pass a
fitted number off as a held-out one.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def by_split(report: dict[str, Any]) -> dict[str, Any]:
    """The calibration report (the API's answer) regrouped by split, for ``--json``."""
    val, test = report["validation"], report["test"]
    return {
        "model": report["model"],
        "version": report["version"],
        "measure": report["measure"],
        "threshold": report["threshold"],
        "target_cloud_share": report.get("target_cloud_share"),
        "target_accuracy": report.get("target_accuracy"),
        "met": report["met"],
        "fitted_at": report.get("fitted_at"),
        "validation": {
            "role": "the threshold is fitted on this split",
            "rows": report["n_validation"],
            "cloud_share": val["cloud_share"],
            "accuracy": val["quality"],
            "edge_alone_accuracy": report["edge_quality"],
            "cloud_alone_accuracy": report["cloud_quality"],
            "cpt50": report.get("cpt50"),
            "cpt80": report.get("cpt80"),
            "apgr": report.get("apgr"),
            "curve": report.get("curve", []),
        },
        "test": {
            "role": "held out: never used to fit, measured once with the fitted threshold",
            "rows": report["n_test"],
            "cloud_share": test["cloud_share"],
            "accuracy": test["quality"],
        },
        # Each split's own curve (edge alone, cloud alone, CPT, APGR), named by its split
        "curves_by_split": report.get("splits", []),
    }


def _curve_table(report: dict[str, Any]) -> Table:
    title = (
        f"{report['model']} v{report['version']}: accuracy vs cloud share on the VALIDATION "
        f"split ({report['n_validation']} rows, where the threshold is fitted)"
    )
    table = Table(title=title)
    for col in ("cloud share", "accuracy", "gap recovered", "threshold"):
        table.add_column(col, justify="right")
    gap = report["cloud_quality"] - report["edge_quality"]
    curve = report["curve"]
    for point in curve[:: max(1, len(curve) // 20)] + curve[-1:]:
        recovered = (point["quality"] - report["edge_quality"]) / gap if gap > 0 else float("nan")
        table.add_row(
            f"{point['cloud_share']:.3f}",
            f"{point['quality']:.4f}",
            f"{recovered:.2f}",
            f"{point['threshold']:.4f}",
        )
    return table


def _threshold_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"threshold {report['threshold']:.4f} ({report['measure']}) per split")
    table.add_column("split")
    for col in ("rows", "cloud share", "accuracy"):
        table.add_column(col, justify="right")
    table.add_column("use")
    val, test = report["validation"], report["test"]
    table.add_row(
        "validation",
        str(report["n_validation"]),
        f"{val['cloud_share']:.3f}",
        f"{val['quality']:.4f}",
        "fitted here",
    )
    table.add_row(
        "test",
        str(report["n_test"]),
        f"{test['cloud_share']:.3f}",
        f"{test['quality']:.4f}",
        "held out: what to expect",
    )
    return table


def _splits_table(report: dict[str, Any]) -> Table:
    table = Table(title="each split's own curve (the measure's ranking; only validation is fitted)")
    table.add_column("split")
    for col in ("rows", "edge alone", "cloud alone", "CPT(50%)", "CPT(80%)", "APGR", "at 30%"):
        table.add_column(col, justify="right")
    for s in report.get("splits", []):
        cells = [s.get(k) for k in ("cpt50", "cpt80", "apgr", "gap_recovered_at_30")]
        table.add_row(
            s["split"].upper(),
            str(s["rows"]),
            f"{s['edge_alone']:.4f}",
            f"{s['cloud_alone']:.4f}",
            *("-" if v is None else f"{v:.3f}" for v in cells),
        )
    return table


def print_calibration(out: Console, report: dict[str, Any]) -> None:
    out.print(_curve_table(report))
    out.print(_threshold_table(report))
    if report.get("splits"):
        out.print(_splits_table(report))
    if not report["met"]:
        out.print("target accuracy NOT reachable on the validation split: best point chosen")
    out.print(
        f"validation split only: edge alone {report['edge_quality']:.4f}, cloud alone "
        f"{report['cloud_quality']:.4f}, CPT(50%) {report['cpt50']}, CPT(80%) "
        f"{report['cpt80']}, APGR {report['apgr']}"
    )
    out.print(
        f"deploy it with: hybridai model deploy {report['model']} {report['version']} "
        "--policy cascade"
    )
