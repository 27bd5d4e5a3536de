"""The metadata store, on every backend (the blob store's one suite is ``test_blobs.py``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from hybridai.storage import create_engine_for, migrate, session_factory
from hybridai.storage.metadata import MIGRATIONS
from hybridai.storage.tables import Base, ModelRow, ModelVersionRow, TrainingRunRow

_config = Config()
_config.set_main_option("script_location", str(MIGRATIONS))
HEAD = ScriptDirectory.from_config(_config).get_current_head()


TABLES = {
    "devices",
    "device_certificates",
    "enrollment_tokens",
    "api_tokens",
    "models",
    "model_versions",
    "model_artifacts",
    "deployments",
    "training_runs",
    "users",
    "revoked_access_tokens",
    "audit_log",
    "audit_head",
    "data_policies",
    "rollouts",
    "device_model_pins",
    "retraining_policies",
    "stream_schemas",
    "fleet_settings",
    "lake_grants",
    "site_keys",
    "quarantined_batches",
    "telemetry_points",
    "telemetry_compaction",
    "alerts",
    "healing_actions",
    "remote_tiers",
    "leases",
    "login_failures",
}


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_migrate_creates_exactly_the_tables(metadata_url: str) -> None:
    engine = create_engine_for(metadata_url)
    try:
        migrate(engine)
        assert set(inspect(engine).get_table_names()) == TABLES | {"alembic_version"}
        assert _revision(engine) == HEAD
    finally:
        engine.dispose()


def test_migration_matches_the_orm(metadata_engine: Engine) -> None:
    with metadata_engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diffs == []


def test_migrate_twice_is_a_no_op_and_keeps_data(metadata_engine: Engine) -> None:
    with session_factory(metadata_engine)() as session:
        session.add(ModelRow(name="pm", created_at=1.5))
        session.commit()

    migrate(metadata_engine)

    assert _revision(metadata_engine) == HEAD
    with session_factory(metadata_engine)() as session:
        assert session.scalars(select(ModelRow.created_at)).all() == [1.5]


def test_two_processes_can_migrate_at_once(metadata_url: str) -> None:
    script = textwrap.dedent(
        """
        import sys
        from hybridai.storage import create_engine_for, migrate
        engine = create_engine_for(sys.argv[1])
        migrate(engine)
        engine.dispose()
        """
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, metadata_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=60)[0].decode() for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    engine = create_engine_for(metadata_url)
    try:
        assert _revision(engine) == HEAD
        assert set(inspect(engine).get_table_names()) >= TABLES
    finally:
        engine.dispose()


def test_foreign_keys_are_enforced_on_every_backend(metadata_engine: Engine) -> None:
    with session_factory(metadata_engine)() as session:
        session.add(ModelVersionRow(name="ghost", version=1, registered_by="t", created_at=0.0))
        with pytest.raises(IntegrityError):
            session.commit()


def test_json_and_float_timestamps_round_trip(metadata_engine: Engine) -> None:
    started = 1_733_000_000.123456
    spec = {"query": "SELECT 1", "features": ["a", "b"], "nested": {"x": [1, 2.5, None]}}
    with session_factory(metadata_engine)() as session:
        session.add(
            TrainingRunRow(
                run_id="r1", model_name="pm", status="running", spec=spec, started_at=started
            )
        )
        session.commit()

    with session_factory(metadata_engine)() as session:
        run = session.get(TrainingRunRow, "r1")
        assert run is not None
        assert (run.spec, run.started_at, run.metrics, run.version) == (spec, started, {}, None)


def test_sqlite_is_configured_for_concurrent_use(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'm.db'}")
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
        assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000}
    finally:
        engine.dispose()


def test_in_memory_sqlite_is_shared_by_all_sessions() -> None:
    engine = create_engine_for("sqlite://")
    try:
        migrate(engine)
        make_session = session_factory(engine)
        with make_session() as session:
            session.add(ModelRow(name="pm", created_at=0.0))
            session.commit()
        with make_session() as session:
            assert session.scalars(select(ModelRow.name)).all() == ["pm"]
    finally:
        engine.dispose()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgres_urls_use_psycopg3(scheme: str) -> None:
    engine = create_engine_for(f"{scheme}://user:pw@db.example:5433/meta")
    assert engine.url.drivername == "postgresql+psycopg"
    assert (engine.url.host, engine.url.port, engine.url.database) == ("db.example", 5433, "meta")


def test_unsupported_database_url_is_refused() -> None:
    with pytest.raises(ValueError, match="sqlite:///PATH or postgresql://"):
        create_engine_for("mysql://root@localhost/x")


def test_objects_stay_readable_after_commit(metadata_engine: Engine) -> None:
    with session_factory(metadata_engine)() as session:
        row = ModelRow(name="pm", created_at=2.0)
        session.add(row)
        session.commit()
    assert row.created_at == 2.0  # detached, not expired


def test_each_test_gets_its_own_database(metadata_url: str, tmp_path: Path) -> None:
    engine = create_engine_for(metadata_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                where = connection.execute(text("SELECT current_schema()")).scalar()
                assert isinstance(where, str) and where.startswith("hai_test_")
            else:
                assert engine.url.database == str(tmp_path / "metadata.db")
    finally:
        engine.dispose()
