"""Who may read which lake stream: read grants per stream, to a role or to one user.

The lake holds every site's data, restricted fields redacted but confidential ones not; the
``read`` action lets a viewer list devices and models, not read every row. So lake rows need a
grant of their own: admins read every stream, anyone else only what was granted to their role
or to them by name. Devices never query the lake.
"""

from __future__ import annotations

from collections.abc import Collection

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.cloud.data.lake import STREAM_RE
from hybridai.governance import rbac
from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.storage.tables import LakeGrantRow

KINDS = ("role", "user")


class LakeGrant(BaseModel):
    stream: str
    kind: str  # "role" or "user"
    name: str
    granted_at: float
    granted_by: str


def _grantee(kind: str, name: str) -> str:
    if kind not in KINDS:
        raise ApiError(400, ErrorCode.INVALID_INPUT, f"grant to a 'role' or a 'user', not {kind!r}")
    if kind == "role" and name not in rbac.ROLES:
        raise ApiError(
            400, ErrorCode.INVALID_INPUT, f"unknown role {name!r}; roles: {', '.join(rbac.ROLES)}"
        )
    if not name or len(name) > 190:
        raise ApiError(400, ErrorCode.INVALID_INPUT, "give the user's name (1-190 characters)")
    return f"{kind}:{name}"


def _check(stream: str) -> None:
    if not STREAM_RE.fullmatch(stream):
        raise ApiError(
            400,
            ErrorCode.INVALID_INPUT,
            "invalid stream name: use 1-63 lowercase letters, digits or underscores, "
            "starting with a letter",
        )


def _grant(row: LakeGrantRow) -> LakeGrant:
    kind, _, name = row.grantee.partition(":")
    return LakeGrant(
        stream=row.stream,
        kind=kind,
        name=name,
        granted_at=row.granted_at,
        granted_by=row.granted_by,
    )


def grant(session: Session, stream: str, kind: str, name: str, by: str, now: float) -> LakeGrant:
    """Let a role or a user read ``stream``; granting twice keeps the first grant."""
    _check(stream)
    grantee = _grantee(kind, name)
    row = session.get(LakeGrantRow, (stream, grantee))
    if row is None:
        row = LakeGrantRow(stream=stream, grantee=grantee, granted_at=now, granted_by=by)
        session.add(row)
        session.flush()
    return _grant(row)


def revoke(session: Session, stream: str, kind: str, name: str) -> None:
    _check(stream)
    grantee = _grantee(kind, name)
    row = session.get(LakeGrantRow, (stream, grantee))
    if row is not None:
        session.delete(row)
    if row is None:
        raise ApiError(404, ErrorCode.NOT_FOUND, f"no grant on {stream!r} to {kind} {name!r}")


def list_grants(session: Session, stream: str | None = None) -> list[LakeGrant]:
    query = select(LakeGrantRow).order_by(LakeGrantRow.stream, LakeGrantRow.grantee)
    if stream is not None:
        query = query.where(LakeGrantRow.stream == stream)
    return [_grant(row) for row in session.scalars(query)]


def readable(session: Session, role: str, name: str) -> Collection[str] | None:
    """The streams a person may read; None for every stream (admins)."""
    if role == rbac.ADMIN:
        return None
    rows = session.scalars(
        select(LakeGrantRow.stream).where(
            LakeGrantRow.grantee.in_((f"role:{role}", f"user:{name}"))
        )
    )
    return set(rows)
