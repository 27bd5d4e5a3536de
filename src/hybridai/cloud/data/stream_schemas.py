"""Stream schema service: declare a stream's record schema for the fleet or a site.

Each device's desired state carries, per stream, its site's declaration or else the fleet's
(``protocol.streams.applicable``); the edge enforces it from then on. A declaration may add
fields but never retype one (see ``protocol.streams.conflicts``): refused here against the
declaration it replaces and against the other scope's (one lake table holds every site's
rows, so a site and the fleet must agree on a column's type). An edge whose own data already
typed a field differently refuses the declaration too and says so in its status report, which
``view`` gathers per device.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.policy import STREAM_PATTERN
from hybridai.protocol.streams import (
    SITE_PATTERN,
    DeclaredSpec,
    FieldType,
    SchemaSpec,
    StreamSchemaDeclaration,
    StreamSchemaState,
    StreamSchemaView,
    applicable,
    conflicts,
)
from hybridai.storage.tables import DeviceRow, StreamSchemaRow

FLEET = ""  # the site column of a fleet-wide declaration
_STREAM = re.compile(STREAM_PATTERN)
_SITE = re.compile(SITE_PATTERN)


def _check(stream: str, site: str | None) -> None:
    if not _STREAM.fullmatch(stream):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"stream name {stream!r} is invalid: use 1-63 lowercase letters, digits or "
            "underscores, starting with a letter",
        )
    if site is not None and not _SITE.fullmatch(site):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            f"site {site!r} is invalid: use lowercase letters, digits, '.', '_' or '-'",
        )


def _declaration(row: StreamSchemaRow) -> StreamSchemaDeclaration:
    return StreamSchemaDeclaration.model_validate(
        {
            **row.spec,
            "stream": row.stream,
            "site": row.site or None,
            "updated_at": row.updated_at,
            "updated_by": row.updated_by,
        }
    )


def _scope(site: str | None) -> str:
    return "the fleet" if site is None else f"site '{site}'"


def _refuse_conflicts(
    stream: str, spec: DeclaredSpec, site: str | None, others: list[StreamSchemaDeclaration]
) -> None:
    for other in others:
        if other.site == site:  # the declaration this one replaces
            problems = conflicts(other.fields, spec.fields)
            hint = "records already stored (and the lake column) have the old type"
        elif site is not None and other.site is None:  # a site under the fleet's declaration
            problems = conflicts(other.fields, spec.fields)
            hint = f"{_scope(None)} declares it so, and every site's rows share one lake table"
        elif site is None and other.site is not None:  # the fleet over a site's declaration
            problems = conflicts(spec.fields, other.fields)
            hint = f"{_scope(other.site)} declares it differently, and the lake table is shared"
        else:
            continue
        if problems:
            raise ApiError(
                409,
                ErrorCode.CONFLICT,
                f"schema of stream '{stream}' for {_scope(site)} refused: "
                f"{'; '.join(problems)} ({hint}). Keep the type, or put the values in a new "
                "field or stream.",
            )


def lake_types(schema: pa.Schema | None) -> dict[str, FieldType]:
    """What the lake table's columns already hold, as schema types (None: no table yet)."""
    types: dict[str, FieldType] = {}
    for field in [] if schema is None else schema:
        kind = field.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            types[field.name] = "string"
        elif pa.types.is_boolean(kind):
            types[field.name] = "boolean"
        elif pa.types.is_integer(kind):
            types[field.name] = "integer"
        elif pa.types.is_floating(kind):
            types[field.name] = "number"
    return types


def put_schema(
    session: Session,
    stream: str,
    spec: DeclaredSpec,
    site: str | None,
    actor: str,
    now: float,
    lake: Mapping[str, FieldType] | None = None,
) -> StreamSchemaDeclaration:
    """Declare (or replace) the schema of ``stream`` for a site, or the fleet (``site`` None).

    ``lake``: the types the stream's lake table already holds (``lake_types``); a declared
    field that contradicts one is refused, since rows of that type could never be committed.
    """
    _check(stream, site)
    _refuse_conflicts(stream, spec, site, list_schemas(session, stream))
    problems = conflicts(lake or {}, spec.fields)
    if problems:
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            f"schema of stream '{stream}' for {_scope(site)} refused: {'; '.join(problems)} "
            "(the lake table already holds that column with the old type). Keep the type, put "
            "the values in a new field or stream, or declare it with retype=true (`hybridai "
            "stream schema set --retype`): the lake table then takes the declared type and rows "
            "that cannot convert are quarantined.",
        )
    data = spec.model_dump(mode="json", include={"fields", "required", "closed"})
    row = session.get(StreamSchemaRow, (stream, site or FLEET))
    if row is None:
        row = StreamSchemaRow(
            stream=stream, site=site or FLEET, spec=data, updated_at=now, updated_by=actor
        )
        session.add(row)
    else:
        row.spec, row.updated_at, row.updated_by = data, now, actor
    session.commit()
    return _declaration(row)


def delete_schema(session: Session, stream: str, site: str | None) -> None:
    """Withdraw a declaration; edges keep the field types, no longer require or close."""
    _check(stream, site)
    row = session.get(StreamSchemaRow, (stream, site or FLEET))
    if row is None:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"stream '{stream}' has no schema declared for {_scope(site)}: "
            f"see `hybridai stream schema show {stream}`",
        )
    session.delete(row)
    session.commit()


def list_schemas(session: Session, stream: str | None = None) -> list[StreamSchemaDeclaration]:
    query = select(StreamSchemaRow).order_by(StreamSchemaRow.stream, StreamSchemaRow.site)
    if stream is not None:
        query = query.where(StreamSchemaRow.stream == stream)
    return [_declaration(row) for row in session.scalars(query)]


def for_site(session: Session, site: str | None) -> dict[str, SchemaSpec]:
    """The schemas a device of ``site`` gets in its desired state, per stream."""
    return applicable(list_schemas(session), site)


def view(session: Session, stream: str) -> StreamSchemaView:
    """The stream's declarations and, from their last status reports, how devices took them."""
    _check(stream, None)
    declarations = list_schemas(session, stream)
    result = StreamSchemaView(
        stream=stream,
        fleet=next((d for d in declarations if d.site is None), None),
        sites={d.site: d for d in declarations if d.site is not None},
    )
    for device in session.scalars(
        select(DeviceRow).where(DeviceRow.revoked.is_(False)).order_by(DeviceRow.device_id)
    ):
        state = ((device.status or {}).get("stream_schemas") or {}).get(stream)
        if state is not None:
            result.devices[device.device_id] = StreamSchemaState.model_validate(state)
    return result
