"""Which tables this process changed: a generation that moves on every write to them.

A process that keeps answers read from the metadata store (what a model name serves, who a
credential belongs to) must forget them when the rows behind them change. Every write this
process makes goes through its session factory, so listening there sees them all, whichever
service made them. Other processes' writes are not seen: a cache keyed on a generation also
needs a time to live, which bounds how stale another replica's change may be seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

__all__ = ["TableWatch"]


class TableWatch:
    """``generation`` moves whenever a session of ``sessions`` writes one of ``tables``.

    It moves when the write is flushed (or executed as a bulk statement) and again when it
    commits, so an answer read between the two, from the old rows, is not kept past the commit;
    a rolled back write moves it harmlessly.
    """

    def __init__(self, sessions: sessionmaker[Session], tables: Iterable[str]) -> None:
        self.tables = frozenset(tables)
        self.generation = 0
        self._key = f"hybridai.watch.{id(self)}"  # a session's info: it wrote a watched table
        event.listen(sessions, "after_flush", self._flushed)
        event.listen(sessions, "do_orm_execute", self._executed)
        event.listen(sessions, "after_commit", self._committed)

    def _changed(self, session: Session) -> None:
        session.info[self._key] = True
        self.generation += 1

    def _flushed(self, session: Session, context: Any) -> None:
        for row in (*session.new, *session.dirty, *session.deleted):
            if getattr(row, "__tablename__", None) in self.tables:
                self._changed(session)
                return

    def _executed(self, state: ORMExecuteState) -> None:
        if state.is_update or state.is_delete or state.is_insert:
            table = getattr(state.statement, "table", None)
            if getattr(table, "name", None) in self.tables:
                self._changed(state.session)

    def _committed(self, session: Session) -> None:
        if session.info.pop(self._key, False):
            self.generation += 1
