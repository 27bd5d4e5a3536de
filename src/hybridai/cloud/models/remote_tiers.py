"""Remote tiers in the metadata store: which models another v2 server serves for the cloud.

Setting one checks what the cloud can check before any request pays for a mistake: the secret
reference resolves (the variable is set, the file is readable) and the TLS files exist. The
secret's value is read at call time and never stored (``protocol.remote``).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from hybridai.protocol.errors import ApiError, ErrorCode
from hybridai.protocol.remote import RemoteTier, RemoteTierInfo
from hybridai.storage.tables import RemoteTierRow


class SecretUnavailable(Exception):
    """A secret reference that does not resolve on this cloud (the message names the reference)."""


def resolve_secret(reference: str) -> str:
    """The value behind ``env:NAME`` or ``file:/path``, stripped of surrounding whitespace."""
    kind, _, where = reference.partition(":")
    if kind == "env":
        value = os.environ.get(where)
        if not value:
            raise SecretUnavailable(
                f"the environment variable {where} of the cloud process is not set (or empty)"
            )
        return value.strip()
    try:
        value = Path(where).read_text().strip()
    except OSError as exc:
        raise SecretUnavailable(
            f"the secret file {where} cannot be read on the cloud: {exc.strerror}"
        ) from None
    if not value:
        raise SecretUnavailable(f"the secret file {where} is empty")
    return value


def check_usable(config: RemoteTier) -> None:
    """400 when the cloud cannot use ``config`` as given (secret, TLS files)."""
    if config.secret is not None:
        try:
            resolve_secret(config.secret)
        except SecretUnavailable as exc:
            raise ApiError(
                400, ErrorCode.BAD_REQUEST, f"{exc}; set it on every cloud replica first"
            ) from None
    for field in ("ca_file", "client_cert", "client_key"):
        path = getattr(config, field)
        if path is not None and not Path(path).is_file():
            raise ApiError(
                400,
                ErrorCode.BAD_REQUEST,
                f"{field} {path} is not a file on the cloud; mount it on every replica first",
            )


def _info(row: RemoteTierRow) -> RemoteTierInfo:
    return RemoteTierInfo(
        name=row.name,
        config=RemoteTier.model_validate(row.config),
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def list_remote_tiers(session: Session) -> list[RemoteTierInfo]:
    rows = session.scalars(select(RemoteTierRow).order_by(RemoteTierRow.name))
    return [_info(row) for row in rows]


def get_remote_tier(session: Session, name: str) -> RemoteTierInfo:
    row = session.get(RemoteTierRow, name)
    if row is None:
        raise ApiError(
            404,
            ErrorCode.NOT_FOUND,
            f"model '{name}' has no remote tier: the cloud serves it itself; set one with "
            "`hybridai model remote set`",
        )
    return _info(row)


def set_remote_tier(
    session: Session, name: str, config: RemoteTier, who: str, now: float
) -> RemoteTierInfo:
    check_usable(config)
    row = session.get(RemoteTierRow, name)
    stored = config.model_dump(mode="json")
    if row is None:
        row = RemoteTierRow(name=name, config=stored, updated_at=now, updated_by=who)
        session.add(row)
    else:
        row.config, row.updated_at, row.updated_by = stored, now, who
    session.flush()
    return _info(row)


def unset_remote_tier(session: Session, name: str) -> None:
    row = session.get(RemoteTierRow, name)
    if row is None:
        get_remote_tier(session, name)  # raises the 404
        return
    session.delete(row)
    session.flush()
