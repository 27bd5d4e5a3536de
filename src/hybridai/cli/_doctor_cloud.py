"""``hybridai doctor cloud``: whether this host's cloud settings name stores and keys that work.

Read-only: nothing is created or migrated (``hybridai cloud serve`` does both at start, so a
missing database or PKI is a warning for a cloud that never started, not a failure). The
listener check dials the configured port and insists on TLS 1.3: a TLS 1.2 handshake must fail.
"""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from hybridai.cli._checks import Check, certificate, disk, failed, passed, warned
from hybridai.cloud.data.lake import Lake
from hybridai.cloud.settings import CloudSettings
from hybridai.link.pki import CloudPki
from hybridai.storage.blobs import LocalBlobStore, open_blob_store
from hybridai.storage.location import parse_location
from hybridai.storage.metadata import MIGRATIONS, create_engine_for

TIMEOUT_S = 5.0
CA_WARN_S = 30 * 86400
SERVER_WARN_S = 14 * 86400
START = "`hybridai cloud serve` creates it at its first start"


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ValueError, TypeError):
        return "the configured URL"


def database(settings: CloudSettings) -> Check:
    """Reachable, and at the newest migration this hybridai knows."""
    url = settings.resolved_database_url()
    shown = _shown(url)
    parsed = make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if sqlite_file and sqlite_file != ":memory:" and not Path(sqlite_file).exists():
        return warned("database", f"{shown} does not exist yet", f"none: {START}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    try:
        engine = create_engine_for(url)
        try:
            with engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_heads()
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        return failed(
            "database",
            f"cannot reach {shown}: {type(exc).__name__}: {reason}",
            "start the database or fix HYBRIDAI_DATABASE_URL (host, port, user, database)",
        )
    if current == (head,):
        return passed("database", f"{shown} reachable, migrated to head ({head})")
    known = ScriptDirectory.from_config(config)
    if any(known.get_revision(rev) is None for rev in current if rev):  # pragma: no branch
        return failed(
            "database",
            f"{shown} is at {', '.join(current)}, a revision this hybridai does not know",
            "upgrade hybridai to the version that migrated this database",
        )
    return warned(
        "database",
        f"{shown} is at {', '.join(current) or 'no revision'}, not head ({head})",
        "the next `hybridai cloud serve` migrates it (back it up first)",
    )


def blobs(settings: CloudSettings) -> Check:
    url = settings.resolved_blob_url()
    try:
        store = open_blob_store(url, settings.blob_s3())
        if isinstance(store, LocalBlobStore):
            return _folder("blob store", Path(parse_location(url).path or url))
        store.exists("doctor/probe")
    except (OSError, ValueError) as exc:
        return failed(
            "blob store",
            f"cannot reach {url}: {exc}",
            "fix HYBRIDAI_CLOUD_BLOB_URL and the BLOB_S3_* settings (the bucket must exist)",
        )
    return passed("blob store", f"{url} reachable")


def lake(settings: CloudSettings) -> Check:
    url = settings.resolved_lake_url()
    try:
        location = parse_location(url, what="lake", settings="HYBRIDAI_CLOUD_LAKE_S3_* settings")
        if location.path is not None:
            return _folder("lake", Path(location.path))
        tables = Lake(url, settings.lake_s3()).versions()
    except (OSError, ValueError, RuntimeError) as exc:
        return failed(
            "lake",
            f"cannot reach {url}: {exc}",
            "fix HYBRIDAI_CLOUD_LAKE_URL and the LAKE_S3_* settings (the bucket must exist)",
        )
    return passed("lake", f"{url} reachable, {len(tables)} table(s)")


def _folder(name: str, folder: Path) -> Check:
    """A local store's folder, or the parent it will be made in on first use, is writable."""
    where = folder
    while not where.exists() and where != where.parent:
        where = where.parent
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        return failed(
            name, f"{where} is not a folder this user can write", f"give write access to {where}"
        )
    if where != folder:
        return passed(name, f"{folder} is made on first use ({where} is writable)")
    return passed(name, f"{folder} is writable")


def pki_files(settings: CloudSettings, now: float) -> list[Check]:
    pki = CloudPki(settings.pki_dir)
    if not pki.ca_cert.exists() and not pki.server_cert.exists():
        return [warned("pki", f"no PKI in {pki.root} yet", f"none: {START}")]
    checks = [
        certificate(
            "platform ca",
            pki.ca_cert,
            now,
            missing_fix=f"restore {pki.ca_cert} from a backup (every device trusts it)",
            renew_fix="renew the platform CA and give devices the new one before it ends",
            warn_within_s=CA_WARN_S,
        ),
        certificate(
            "server certificate",
            pki.server_cert,
            now,
            missing_fix=f"remove {pki.server_key} too and run `hybridai cloud init` to issue one",
            renew_fix=f"remove {pki.server_cert} and {pki.server_key}, then `hybridai cloud init`",
            warn_within_s=SERVER_WARN_S,
        ),
    ]
    for name, key in (("ca key", pki.ca_key), ("server key", pki.server_key)):
        if not key.is_file():
            checks.append(failed(name, f"{key} is missing", "restore it from a backup"))
        elif key.stat().st_mode & 0o077:
            checks.append(failed(name, f"{key} is readable by other users", f"chmod 600 {key}"))
        else:
            checks.append(passed(name, f"{key} present, mode 0600"))
    return checks


def _handshake(host: str, port: int, context: ssl.SSLContext) -> str:
    with (
        socket.create_connection((host, port), timeout=TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return str(tls.version())


def listener(settings: CloudSettings) -> Check:
    """The configured port answers TLS 1.3 and refuses TLS 1.2."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
    where = f"{host}:{settings.port}"
    modern = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    modern.check_hostname = False
    modern.verify_mode = ssl.CERT_NONE  # the version is checked here, trust by the edge's doctor
    modern.minimum_version = ssl.TLSVersion.TLSv1_3
    try:
        version = _handshake(host, settings.port, modern)
    except ConnectionRefusedError:
        return warned(
            "listener", f"nothing listens at {where}", "start the cloud: `hybridai cloud serve`"
        )
    except (OSError, ssl.SSLError) as exc:
        return failed(
            "listener",
            f"{where} does not complete a TLS 1.3 handshake ({exc})",
            "check HYBRIDAI_CLOUD_PORT names the hybridai cloud, not another service",
        )
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    legacy.maximum_version = ssl.TLSVersion.TLSv1_2
    try:
        old = _handshake(host, settings.port, legacy)
    except (OSError, ssl.SSLError):
        return passed("listener", f"{where} speaks {version} only")
    return failed(
        "listener",
        f"{where} also accepts {old}",
        "serve the cloud with `hybridai cloud serve` (TLS 1.3 only), not behind a TLS 1.2 proxy",
    )


def cloud_checks(settings: CloudSettings, now: float) -> list[Check]:
    return [
        disk("disk", settings.data_dir, "the cloud's database, blobs and lake"),
        database(settings),
        blobs(settings),
        lake(settings),
        *pki_files(settings, now),
        listener(settings),
    ]
