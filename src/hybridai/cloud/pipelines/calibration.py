"""Cascade calibration of any model version, on validation rows only.

The rows are the version's own validation split, or labelled rows given with the request
(``calibration_rows``, which also guards against rows the model was trained or tested on).
Both ONNX variants run on them with ONNX Runtime, as the fleet and the cloud would run them,
for k-class models alike; the edge's confidence is the ``CascadeRule`` measure the live edge
applies, and ``orchestrator.fit_share`` / ``fit_quality`` fit the threshold there. Held-out rows
are only evaluated, for the report. The threshold, its measure and the whole curve are stored in
the version's metrics under ``cascade``; ``deploy --policy cascade`` uses them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines.calibration_rows import answers, members, rows_for
from hybridai.orchestrator import (
    CascadeRule,
    HeldOutSplit,
    Measure,
    Outcomes,
    ValidationSplit,
    apgr,
    cpt,
    curve,
    evaluate,
    fit_quality,
    fit_share,
    pgr_at,
)
from hybridai.orchestrator.cascade import CLASSIFIER_MEASURES
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import (
    CalibrationReport,
    CalibrationRequest,
    CurvePoint,
    SplitCurveFigures,
    SplitName,
)
from hybridai.storage.blobs import BlobStore
from hybridai.storage.tables import ModelVersionRow

CURVE_POINTS = 101  # the stored curve is thinned to about this many points (share 0..1)
ALWAYS = 2.0  # a finite stand-in for an infinite threshold: every confidence is below it


def _invalid(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_INPUT, message)


def _finite(threshold: float) -> float:
    if math.isinf(threshold):
        return ALWAYS if threshold > 0 else 0.0
    return float(threshold)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def _thin(points: list[CurvePoint]) -> list[CurvePoint]:
    """At most about CURVE_POINTS points, evenly spread over cloud share, ends kept."""
    if len(points) <= CURVE_POINTS:
        return points
    shares = np.asarray([p.cloud_share for p in points])
    wanted = np.linspace(0.0, 1.0, CURVE_POINTS)
    keep = sorted({int(np.argmin(np.abs(shares - w))) for w in wanted} | {0, len(points) - 1})
    return [points[i] for i in keep]


def _outcomes(
    artifacts: dict[str, bytes], x: Any, y: Any, rule: CascadeRule
) -> tuple[Any, Any, Any]:
    """Confidence, edge and cloud quality per row: correctness, or minus the absolute error."""
    if rule.measure is Measure.SPREAD:
        edge_prediction, edge_members = members(artifacts["edge"], x, "edge")
        cloud_prediction = members(artifacts["cloud"], x, "cloud")[0]
        return (
            rule.confidences(edge_members),
            -np.abs(edge_prediction - y),
            -np.abs(cloud_prediction - y),
        )
    edge_label, edge_probabilities = answers(artifacts["edge"], x, "edge")
    cloud_label = answers(artifacts["cloud"], x, "cloud")[0]
    confidence = rule.confidences(edge_probabilities)
    return (
        confidence,
        (edge_label == y).astype(np.float64),
        (cloud_label == y).astype(np.float64),
    )


def _figures(split: SplitName, outcomes: Outcomes) -> SplitCurveFigures:
    """A split's own curve figures, labelled with the split (only validation is fitted on)."""
    c = curve(outcomes)
    role = "the threshold is fitted here" if split == "validation" else "held out, never fitted"
    return SplitCurveFigures(
        split=split,
        role=role,
        rows=len(outcomes),
        edge_alone=c.edge_quality,
        cloud_alone=c.cloud_quality,
        cpt50=_number(cpt(c, 0.5)),
        cpt80=_number(cpt(c, 0.8)),
        apgr=_number(apgr(c)),
        gap_recovered_at_30=_number(pgr_at(c, 0.3)),
    )


def calibrate(
    session: Session,
    blobs: BlobStore,
    lake: Lake,
    name: str,
    version: str,
    request: CalibrationRequest,
    now: float | None = None,
    data: pa.Table | None = None,
) -> CalibrationReport:
    """Fit, store and report the cascade threshold of ``name`` ``version``.

    ``data``: labelled rows from an uploaded file (``request.query``: from the lake); neither:
    the version's own validation split.
    """
    if (request.target_cloud_share is None) == (request.target_accuracy is None):
        raise _invalid("give exactly one of target_cloud_share or target_accuracy")
    info = registry.get_version(session, name, version)  # 404s that say what exists
    row = session.get(ModelVersionRow, (info.name, int(info.version)))
    assert row is not None
    regression = request.measure is Measure.SPREAD
    if request.measure not in (*CLASSIFIER_MEASURES, Measure.SPREAD):
        raise _invalid(
            f"measure {request.measure.value!r} is for anomaly scores; calibrate a classifier "
            f"with {', '.join(m.value for m in CLASSIFIER_MEASURES)}, a regression ensemble "
            "with spread"
        )
    if regression and request.target_accuracy is not None:
        raise _invalid(
            "a regression cascade is calibrated to a cloud share (target_cloud_share); its "
            "quality is minus the absolute error, not an accuracy"
        )
    missing = [v for v in ("edge", "cloud") if v not in {a.variant for a in info.artifacts}]
    if missing:
        raise _invalid(
            f"{name} v{version} has no {' or '.join(missing)} variant: a cascade weighs the edge "
            "variant against the cloud one, so upload both (--edge and --cloud-variant)"
        )
    chosen = rows_for(lake, row, request, data, regression)
    artifacts = {
        v: registry.read_artifact(session, blobs, name, version, v) for v in ("edge", "cloud")
    }
    rule = CascadeRule(measure=Measure(request.measure))
    if regression:  # confidence 0 at twice the widest validation spread: an order kept intact
        spread = members(artifacts["edge"], chosen.x_validation, "edge")[1]
        widest = float((spread.max(axis=1) - spread.min(axis=1)).max())
        rule = CascadeRule(measure=Measure.SPREAD, band=2.0 * widest if widest > 0 else 1.0)
    val = ValidationSplit(*_outcomes(artifacts, chosen.x_validation, chosen.y_validation, rule))
    test = HeldOutSplit(*_outcomes(artifacts, chosen.x_test, chosen.y_test, rule))
    if request.target_cloud_share is not None:
        fitted = fit_share(val, request.target_cloud_share)
    else:
        assert request.target_accuracy is not None
        fitted = fit_quality(val, request.target_accuracy)
    threshold = _finite(fitted.threshold)
    c = curve(val)
    points = [
        CurvePoint(threshold=_finite(p.threshold), cloud_share=p.cloud_share, quality=p.quality)
        for p in c.points()
    ]
    on_test = evaluate(test, threshold)
    report = CalibrationReport(
        model=name,
        version=str(row.version),
        measure=request.measure,
        target_cloud_share=request.target_cloud_share,
        target_accuracy=request.target_accuracy,
        threshold=threshold,
        met=fitted.met,
        validation=CurvePoint(
            threshold=threshold, cloud_share=fitted.cloud_share, quality=fitted.quality
        ),
        test=CurvePoint(
            threshold=threshold, cloud_share=on_test.cloud_share, quality=on_test.quality
        ),
        edge_quality=c.edge_quality,
        cloud_quality=c.cloud_quality,
        cpt50=_number(cpt(c, 0.5)),
        cpt80=_number(cpt(c, 0.8)),
        apgr=_number(apgr(c)),
        n_validation=len(val),
        n_test=len(test),
        curve=_thin(points),
        fitted_at=time.time() if now is None else now,
        rows=chosen.rows + ("; quality is minus the absolute error" if regression else ""),
        guard=chosen.guard,
        band=rule.band if regression else None,
    )
    report.splits = [_figures("validation", val), _figures("test", test)]
    row.metrics = {**(row.metrics or {}), "cascade": report.model_dump(mode="json")}
    session.commit()
    return report
