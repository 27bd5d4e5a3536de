"""A process's writes to watched tables move a generation; answers kept across one are dropped.

On a real SQLite file with the project's migrated schema: ORM writes, bulk statements, writes
to other tables, rollbacks; and ``Resolutions`` never keeps an answer read while a watched
write was committed (it would be stale until its time to live ran out).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from hybridai.cloud.models.resolution import Resolution, Resolutions
from hybridai.storage.metadata import create_engine_for, migrate, session_factory
from hybridai.storage.tables import AuditHeadRow, DataPolicyRow
from hybridai.storage.watch import TableWatch


def _sessions(tmp_path: Path) -> sessionmaker[Session]:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'meta.db'}")
    migrate(engine)
    return session_factory(engine)


def _policy(stream: str) -> DataPolicyRow:
    return DataPolicyRow(stream=stream, spec={}, updated_at=0.0, updated_by="test")


def test_writes_to_watched_tables_move_the_generation_and_others_do_not(tmp_path: Path) -> None:
    sessions = _sessions(tmp_path)
    watch = TableWatch(sessions, {"data_policies"})

    with sessions() as session:
        session.execute(update(AuditHeadRow).values(seq=0))  # another table
        session.commit()
    assert watch.generation == 0

    with sessions() as session:
        session.add(_policy("vitals"))
        session.commit()
    after_insert = watch.generation
    assert after_insert >= 2  # flushed, then committed

    with sessions() as session:
        session.execute(update(DataPolicyRow).values(updated_by="bulk"))
        session.commit()
    assert watch.generation > after_insert


def test_a_rolled_back_write_moves_it_only_harmlessly(tmp_path: Path) -> None:
    sessions = _sessions(tmp_path)
    watch = TableWatch(sessions, {"data_policies"})
    with sessions() as session:
        session.add(_policy("vitals"))
        session.flush()
        session.rollback()
    moved = watch.generation
    with sessions() as session:
        session.get(DataPolicyRow, "vitals")
        session.commit()  # a later read-only commit does not count the undone write again

    assert watch.generation == moved


def test_an_answer_read_across_a_watched_commit_is_not_kept(tmp_path: Path) -> None:
    sessions = _sessions(tmp_path)
    watch = TableWatch(sessions, {"data_policies"})
    loads: list[str] = []

    def load(name: str) -> Resolution:
        loads.append(name)
        if len(loads) == 1:  # another request commits a change while this one reads
            with sessions() as session:
                session.add(_policy("vitals"))
                session.commit()
        return Resolution(version=str(len(loads)), policy=None, restricted_stream=None)

    resolutions = Resolutions(load, watch, ttl_s=60.0)

    assert resolutions.resolve("pm").version == "1"
    assert resolutions.fresh("pm") is None  # read before the commit: not kept
    assert resolutions.resolve("pm").version == "2"
    assert resolutions.fresh("pm") == Resolution("2", None, None)
    assert resolutions.resolve("pm").version == "2"
    assert loads == ["pm", "pm"]
