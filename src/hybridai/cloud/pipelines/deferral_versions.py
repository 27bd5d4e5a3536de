"""A registered version's deferral: fit its router, choose its method, store what edges get.

The rows are the ones calibration reads (``calibration_rows.rows_for``: the version's own
validation split, or labelled lake rows with the same guard against training and test rows).
The router is fitted and both methods calibrated on the validation rows only
(``pipelines.deferral``); the held-out rows are scored once, for the report. The version's
metrics keep the ``DeferralSpec`` under ``deferral.spec`` (the desired state ships it with the
edge variant, router signed) and the report under ``deferral.report``.
"""

from __future__ import annotations

import base64
import math
import time
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.models import registry
from hybridai.cloud.pipelines import deferral
from hybridai.cloud.pipelines.calibration_rows import answers, rows_for
from hybridai.orchestrator import CascadeRule, HeldOutSplit, apgr, cpt, curve, evaluate
from hybridai.orchestrator.deferral import router_features
from hybridai.protocol.deferral import (
    DeferralChoice,
    DeferralMethod,
    DeferralReport,
    DeferralRequest,
    DeferralSpec,
    MethodFigures,
    RouterSpec,
    SplitFigures,
)
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.placement import CalibrationRequest
from hybridai.storage.blobs import BlobStore
from hybridai.storage.tables import ModelVersionRow

Array = np.ndarray[Any, Any]


def _invalid(message: str) -> ApiError:
    return ApiError(400, ErrorCode.INVALID_INPUT, message)


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)


def _figures(split: HeldOutSplit, threshold: float) -> MethodFigures:
    c = curve(split)
    point = evaluate(split, threshold)
    return MethodFigures(
        threshold=threshold,
        cloud_share=round(point.cloud_share, 6),
        accuracy=round(point.quality, 6),
        apgr=_number(apgr(c)),
        cpt50=_number(cpt(c, 0.5)),
        cpt80=_number(cpt(c, 0.8)),
    )


def _correct(labels: Array, y: Array) -> Array:
    right: Array = (np.asarray(labels) == np.asarray(y)).astype(np.float64)
    return right


def stored_spec(metrics: dict[str, Any] | None) -> DeferralSpec | None:
    """The deferral a version ships (None: none fitted, its cascade uses the threshold)."""
    stored = (metrics or {}).get("deferral")
    if not isinstance(stored, dict) or not isinstance(stored.get("spec"), dict):
        return None
    return DeferralSpec.model_validate(stored["spec"])


def fit_version(
    session: Session,
    blobs: BlobStore,
    lake: Lake,
    name: str,
    version: str,
    request: DeferralRequest,
    signing_key: Ed25519PrivateKey | None,
    now: float | None = None,
) -> DeferralReport:
    """Fit, choose, store and report the deferral of ``name`` ``version``."""
    if (request.target_cloud_share is None) == (request.target_accuracy is None):
        raise _invalid("give exactly one of target_cloud_share or target_accuracy")
    info = registry.get_version(session, name, version)  # 404s that say what exists
    row = session.get(ModelVersionRow, (info.name, int(info.version)))
    assert row is not None
    if {"edge", "cloud"} - {a.variant for a in info.artifacts}:
        raise _invalid(
            f"{name} v{version} needs both an edge and a cloud variant: the router learns where "
            "the edge variant is wrong and the cloud one would answer instead"
        )
    chosen = rows_for(
        lake,
        row,
        CalibrationRequest(
            target_cloud_share=request.target_cloud_share,
            target_accuracy=request.target_accuracy,
            query=request.query,
            label=request.label,
            features=request.features,
        ),
        None,
    )
    artifacts = {
        v: registry.read_artifact(session, blobs, name, version, v) for v in ("edge", "cloud")
    }
    x_val, x_test = np.asarray(chosen.x_validation), np.asarray(chosen.x_test)
    ev_label, ev_probs = answers(artifacts["edge"], x_val, "edge")
    et_label, et_probs = answers(artifacts["edge"], x_test, "edge")
    ev_ok, et_ok = _correct(ev_label, chosen.y_validation), _correct(et_label, chosen.y_test)
    cv_ok = _correct(answers(artifacts["cloud"], x_val, "cloud")[0], chosen.y_validation)
    ct_ok = _correct(answers(artifacts["cloud"], x_test, "cloud")[0], chosen.y_test)

    fit = deferral.fit_router(x_val, ev_probs, ev_ok, cv_ok)
    if request.method is DeferralChoice.ROUTER and fit.model is None:
        raise _invalid(
            f"no router can be learned for {name} v{version}: the edge variant is wrong on too "
            f"few validation rows (fewer than {deferral.MIN_ROWS_PER_CLASS}) or right on too "
            "few; use method 'threshold' or 'auto', or give more validation rows"
        )
    method = fit.method if request.method is DeferralChoice.AUTO else DeferralMethod(request.method)
    targets = {"target_cloud_share": request.target_cloud_share}
    if request.target_accuracy is not None:
        targets = {"target_quality": request.target_accuracy}
    fitted = {m: deferral.calibrate(fit, m, **targets) for m in _methods(fit)}
    test_confidence = {DeferralMethod.THRESHOLD: CascadeRule(fit.measure).confidences(et_probs)}
    router: RouterSpec | None = None
    if fit.model is not None and fit.family is not None:
        width = router_features(x_val[:1], ev_probs[:1]).shape[1]
        onnx = deferral.export(fit.model, width)
        threshold = fitted[DeferralMethod.ROUTER].threshold
        router = deferral.router_spec(
            onnx, threshold, width, fit.family, info.name, info.version, signing_key
        )
        test_confidence[DeferralMethod.ROUTER] = deferral.run(
            onnx, router_features(x_test, et_probs)
        )
    spec = deferral.deferral_spec(fit, router, method)

    def figures(m: DeferralMethod) -> tuple[MethodFigures, MethodFigures]:
        threshold = deferral.finite(fitted[m].threshold)
        val = fit.split(m)
        on_val = _figures(
            HeldOutSplit(val.confidence, val.edge_quality, val.cloud_quality), threshold
        )
        on_test = _figures(HeldOutSplit(test_confidence[m], et_ok, ct_ok), threshold)
        return on_val, on_test

    both = {m: figures(m) for m in fitted}
    report = DeferralReport(
        model=info.name,
        version=info.version,
        method=method,
        chosen_by="validation APGR" if request.method is DeferralChoice.AUTO else "named",
        target_cloud_share=request.target_cloud_share,
        target_accuracy=request.target_accuracy,
        threshold_measure=fit.measure.value,
        router_family=fit.family,
        router_bytes=len(base64.b64decode(router.onnx)) if router is not None else 0,
        validation=SplitFigures(
            role="fitted here: routers scored out of fold, thresholds calibrated here",
            rows=len(ev_ok),
            edge_alone_accuracy=float(ev_ok.mean()),
            cloud_alone_accuracy=float(cv_ok.mean()),
            methods={m: f[0] for m, f in both.items()},
        ),
        test=SplitFigures(
            role="held out: never used to fit, measured once with what was fitted",
            rows=len(et_ok),
            edge_alone_accuracy=float(et_ok.mean()),
            cloud_alone_accuracy=float(ct_ok.mean()),
            methods={m: f[1] for m, f in both.items()},
        ),
        rows=chosen.rows,
        fitted_at=time.time() if now is None else now,
    )
    row.metrics = {
        **(row.metrics or {}),
        "deferral": {
            "spec": spec.model_dump(mode="json"),
            "report": report.model_dump(mode="json"),
        },
    }
    session.commit()
    return report


def _methods(fit: deferral.RouterFit) -> list[DeferralMethod]:
    if fit.model is None:
        return [DeferralMethod.THRESHOLD]
    return [DeferralMethod.THRESHOLD, DeferralMethod.ROUTER]


def stored_report(session: Session, name: str, version: str) -> DeferralReport | None:
    """The report of the deferral last fitted for the version (None: none was)."""
    info = registry.get_version(session, name, version)  # 404s that say what exists
    row = session.get(ModelVersionRow, (info.name, int(info.version)))
    stored = (row.metrics or {}).get("deferral") if row is not None else None
    if not isinstance(stored, dict) or not isinstance(stored.get("report"), dict):
        return None
    return DeferralReport.model_validate(stored["report"])
