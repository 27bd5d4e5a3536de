"""Stream schema routes: declare, withdraw and read per-stream record schemas."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from hybridai.cloud.auth import cloud_of, require
from hybridai.cloud.data import quarantine, stream_schemas
from hybridai.protocol.streams import DeclaredSpec, StreamSchemaDeclaration, StreamSchemaView

router = APIRouter(prefix="/api/v1", tags=["streams"])


def _audit(request: Request, stream: str, site: str | None) -> None:
    request.state.audit_target = f"stream={stream[:63]},site={(site or '*')[:63]}"


@router.get("/streams/schemas")
def list_schemas(request: Request) -> list[StreamSchemaDeclaration]:
    """Every declared stream schema, fleet-wide and per site."""
    require(request, "read")
    with cloud_of(request).session() as session:
        return stream_schemas.list_schemas(session)


@router.get("/streams/{stream}/schema")
def get_schema(stream: str, request: Request) -> StreamSchemaView:
    """The stream's declarations, and whether each device applied or refused its own."""
    require(request, "read")
    with cloud_of(request).session() as session:
        return stream_schemas.view(session, stream)


@router.put("/streams/{stream}/schema")
def put_schema(
    stream: str,
    spec: DeclaredSpec,
    request: Request,
    site: str | None = None,
    retype: bool = False,
) -> StreamSchemaDeclaration:
    """Declare the stream's schema for a site (``?site=``) or the fleet.

    Edges enforce it from their next desired state. Changing a declared field's type is
    refused (409), and so is a type the lake table holds otherwise unless ``?retype=true``:
    then the declaration wins, the lake table takes the declared types and rows that cannot
    convert are quarantined (``GET /api/v1/quarantine``).
    """
    _audit(request, stream, site)
    who = require(request, "operate")
    cloud = cloud_of(request)
    try:
        lake = stream_schemas.lake_types(cloud.lake.arrow_schema(stream))
    except ValueError:  # not a stream name: put_schema refuses it with the reason
        lake = {}
    now = time.time()
    with cloud.session() as session:
        declared = stream_schemas.put_schema(
            session, stream, spec, site, who.name, now, lake=None if retype else lake
        )
        wrong = {
            name: quarantine.ARROW_TYPES[kind]
            for name, kind in spec.fields.items()
            if name in lake and lake[name] != kind and (lake[name], kind) != ("number", "integer")
        }
        if wrong:
            quarantine.retype(session, cloud.blobs, cloud.lake, stream, wrong, now)
    return declared


@router.delete("/streams/{stream}/schema", status_code=204)
def delete_schema(stream: str, request: Request, site: str | None = None) -> Response:
    """Withdraw a declaration: edges keep the field types but no longer require or close."""
    _audit(request, stream, site)
    require(request, "operate")
    with cloud_of(request).session() as session:
        stream_schemas.delete_schema(session, stream, site)
    return Response(status_code=204)
