"""The cloud's wiring: its stores opened once per process and handed to every service call."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from hybridai.cloud.data.lake import Lake
from hybridai.cloud.devices import fleet
from hybridai.cloud.devices.certificates import DeviceAuthority
from hybridai.cloud.metrics import CloudMetrics
from hybridai.cloud.people import bootstrap
from hybridai.cloud.settings import CloudSettings
from hybridai.link.pki import init_cloud_pki
from hybridai.link.signing import load_or_create_key
from hybridai.observability.healing import HealingRules, default_rules, load_rules
from hybridai.storage.blobs import BlobStore, open_blob_store
from hybridai.storage.metadata import create_engine_for, migrate, session_factory


@dataclass
class Cloud:
    settings: CloudSettings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    lake: Lake
    # Training runs one at a time: the machine's cores also serve requests.
    jobs: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "training"))
    signing_key: Ed25519PrivateKey | None = None  # signs model artifacts at registration
    authority: DeviceAuthority | None = None  # the platform CA: signs device certificates
    metrics: CloudMetrics = field(default_factory=CloudMetrics)  # GET /metrics
    healing_rules: HealingRules = field(default_factory=default_rules)  # alert -> action

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends, rolled back on error.

        Service functions may commit their own steps inside it (the registry does, to retry
        a version number taken by a concurrent writer).
        """
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def device_authority(self) -> DeviceAuthority:
        if self.authority is None:
            raise RuntimeError("this cloud has no platform CA: open it with open_cloud")
        return self.authority

    def close(self) -> None:
        self.jobs.shutdown(wait=False, cancel_futures=True)
        self.engine.dispose()


def open_cloud(settings: CloudSettings) -> Cloud:
    """Open (and migrate) every store; create the PKI and a first admin token if missing."""
    rules = load_rules(settings.healing_rules_file)  # a bad rules file stops the start early
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    init_cloud_pki(settings.pki_dir, settings.tls_names, time.time(), settings.passphrase())
    engine = create_engine_for(settings.resolved_database_url())
    migrate(engine)
    cloud = Cloud(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        blobs=open_blob_store(settings.resolved_blob_url(), settings.blob_s3()),
        lake=Lake(settings.resolved_lake_url(), settings.lake_s3()),
        signing_key=load_or_create_key(settings.resolved_signing_key_file()),
        authority=DeviceAuthority.load(
            settings.pki_dir, settings.passphrase(), settings.device_cert_lifetime_s
        ),
        healing_rules=rules,
    )
    bootstrap_admin_token(cloud)
    return cloud


def bootstrap_admin_token(cloud: Cloud) -> None:
    """Write a first admin API token to DATA_DIR/admin.token (mode 0600) unless one exists.

    The token is shown only through that file; the store keeps its hash. Once revoked
    (``hybridai token revoke-bootstrap``) none is minted again.
    """
    path = cloud.settings.admin_token_path
    if path.exists():
        return
    with cloud.session() as session:
        if bootstrap.ever_revoked(session):
            return
        token = fleet.create_api_token(session, bootstrap.NAME, "admin", time.time())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
