"""Shared fixtures for integration tests: a metadata store URL per backend, an S3 server.

``metadata_url`` runs a test on SQLite always and on PostgreSQL when it is reachable (named by
``HYBRIDAI_TEST_POSTGRES_URL``); in CI (``CI=true``) an unreachable PostgreSQL fails instead of
skipping. Each PostgreSQL test gets its own fresh schema (via ``search_path``), dropped after,
so runs sharing one database never see each other's tables.

``s3`` is a real S3-compatible server (``weed``, see ``tests/_s3.py``) for the whole session:
the lake and blob store suites run on it as on a local folder. ``lake_factory`` runs a lake test
on a local folder and on S3 (``tests/_lakes.py``); in CI a missing ``weed`` fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from _lakes import LakeFactory, local_lakes
from _s3 import S3Server, require_weed, weed_server
from hybridai.storage.metadata import create_engine_for, migrate, session_factory

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_postgres_problem: list[str | None] = []  # memo: [] unprobed, [None] reachable, [msg] not


def _postgres_url() -> str:
    return os.environ.get("HYBRIDAI_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _probe_postgres() -> str | None:
    if not _postgres_problem:
        url = make_url(_postgres_url()).update_query_dict({"connect_timeout": "3"})
        engine = create_engine_for(url.render_as_string(hide_password=False))
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            _postgres_problem.append(None)
        except Exception as exc:
            _postgres_problem.append(f"{type(exc).__name__}: {exc}".splitlines()[0])
        finally:
            engine.dispose()
    return _postgres_problem[0]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to an empty metadata database, on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'metadata.db'}"
        return
    problem = _probe_postgres()
    if problem is not None:
        message = f"PostgreSQL at {make_url(_postgres_url())!r} is unreachable: {problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    schema = f"hai_test_{uuid.uuid4().hex[:16]}"
    admin = create_engine_for(_postgres_url())
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(_postgres_url()).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def metadata_engine(metadata_url: str) -> Iterator[Engine]:
    """A migrated engine on each backend; disposed after the test."""
    engine = create_engine_for(metadata_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def db(metadata_engine: Engine) -> Iterator[Session]:
    """A session on the migrated metadata store."""
    with session_factory(metadata_engine)() as session:
        yield session


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server; each test takes its own prefix (``s3.root()``)."""
    binary = require_weed()
    with weed_server(binary, tmp_path_factory.mktemp("weed")) as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def lake_factory(request: pytest.FixtureRequest, tmp_path: Path) -> LakeFactory:
    """Lakes on each backend in turn: a local folder, then a fresh prefix on ``s3``."""
    if request.param == "local":
        return local_lakes(tmp_path)
    server: S3Server = request.getfixturevalue("s3")
    return LakeFactory("s3", server.root, server.options)
