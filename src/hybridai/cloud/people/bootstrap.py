"""The bootstrap admin token: the first way in, revoked once a person with MFA can administer.

``hybridai cloud serve`` writes it to DATA_DIR/admin.token at the first start, so a new platform
can be set up at all. It is an API token with no second factor behind it: once an admin with MFA
exists, it is a standing admin credential nobody needs. The compliance report fails while it is
still valid, and ``hybridai token revoke-bootstrap`` revokes it, for good (the cloud never mints
another, even when the file is gone).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.storage.tables import ApiTokenRow, UserRow

NAME = "bootstrap-admin"


def _tokens(session: Session) -> list[ApiTokenRow]:
    return list(session.scalars(select(ApiTokenRow).where(ApiTokenRow.name == NAME)))


def active(session: Session) -> bool:
    """Whether a bootstrap admin token is still accepted."""
    return any(not row.revoked for row in _tokens(session))


def ever_revoked(session: Session) -> bool:
    """Whether a bootstrap token was revoked: then no new one may be minted."""
    return any(row.revoked for row in _tokens(session))


def mfa_admins(session: Session) -> list[str]:
    """Active admins with MFA enrolled: the people who make the bootstrap token unneeded."""
    rows = session.scalars(
        select(UserRow).where(
            UserRow.role == "admin", UserRow.mfa_enabled.is_(True), UserRow.disabled.is_(False)
        )
    )
    return sorted(row.name for row in rows)


def revoke(session: Session, token_file: Path) -> int:
    """Revoke every bootstrap token and delete ``token_file``; returns how many were active.

    Refused (409) while no admin with MFA exists: revoking then would lock everyone out.
    """
    if not mfa_admins(session):
        raise ApiError(
            409,
            ErrorCode.CONFLICT,
            "no active admin has MFA yet, so revoking the bootstrap token would lock every admin "
            "out: add one (`hybridai user add NAME --role admin`), enroll MFA "
            "(`hybridai user mfa-enroll NAME`), then revoke",
        )
    rows = [row for row in _tokens(session) if not row.revoked]
    for row in rows:
        row.revoked = True
    session.commit()
    token_file.unlink(missing_ok=True)
    return len(rows)
