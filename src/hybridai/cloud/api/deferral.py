"""Deferral routes: fit a version's learned router and choose its cascade method."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.pipelines import deferral_versions
from hybridai.protocol.deferral import DeferralReport, DeferralRequest
from hybridai.protocol.errors import ApiError, ErrorCode

router = APIRouter(prefix="/api/v1", tags=["models"])


@router.post("/models/{name}/versions/{version}/deferral")
async def fit_deferral(
    name: str, version: str, body: DeferralRequest, request: Request
) -> DeferralReport:
    """Fit the router on validation rows, calibrate both methods, keep the better (or named).

    Edges get the method and the signed router with the version's edge variant.
    """
    require(request, "train")
    ctx = cloud_of(request)

    def fit() -> DeferralReport:
        with ctx.session() as session:
            return deferral_versions.fit_version(
                session, ctx.blobs, ctx.lake, name, version, body, ctx.signing_key
            )

    return await run_in_threadpool(fit)


@router.get("/models/{name}/versions/{version}/deferral")
def get_deferral(name: str, version: str, request: Request) -> DeferralReport:
    """The last deferral fitted for the version: 404 when none was."""
    require(request, "read")
    with cloud_of(request).session() as session:
        report = deferral_versions.stored_report(session, name, version)
    if report is None:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"{name} v{version} has no learned deferral: fit one with "
            f"`hybridai model defer {name} --version {version} --target-cloud-share 0.3`",
        )
    return report
