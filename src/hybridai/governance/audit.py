"""The tamper-evident audit log: append-only entries in a sha256 hash chain.

Each entry's ``hash`` is ``sha256(prev_hash + canonical JSON of its fields)`` and its
``prev_hash`` is the hash of the entry before it (``GENESIS`` for the first), so editing,
deleting or reordering any entry breaks the chain at a place ``verify`` names. The chain head
(``audit_head``: last sequence number and hash) is updated in the same transaction as the
append; the append starts with an ``UPDATE`` of that row, which takes the write lock on SQLite
and a row lock on PostgreSQL, so concurrent writers (threads, processes, replicas) queue up
instead of forking the chain. The head also makes deleting the newest entries detectable.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hybridai.protocol.people import AuditEntry, AuditProblemKind
from hybridai.storage.tables import AuditEntryRow, AuditHeadRow

GENESIS = "0" * 64
_HEAD_ID = 1
_FIELDS = ("ts", "actor", "role", "action", "target", "client", "result", "status", "detail")
MAX_TEXT = 2000  # longer texts are cut, so a huge input cannot bloat the log

Result = Literal["ok", "denied", "refused", "error"]
ProblemKind = AuditProblemKind


@dataclass(frozen=True)
class Event:
    """What happened: who (and in which role), did what, to what, from where, with what result."""

    actor: str
    role: str
    action: str
    target: str
    client: str
    result: Result
    status: int
    detail: str = ""


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: ProblemKind
    message: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    head_seq: int
    problems: list[Problem] = field(default_factory=list)


def canonical(fields: dict[str, Any]) -> bytes:
    """One byte string per content: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical(fields)).hexdigest()


def _fields(row: AuditEntryRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _FIELDS}


def _entry(row: AuditEntryRow) -> AuditEntry:
    return AuditEntry(seq=row.seq, prev_hash=row.prev_hash, hash=row.hash, **_fields(row))


def clean(text: str) -> str:
    """Text as stored: NUL (which PostgreSQL cannot store) written as a visible escape."""
    return text.replace("\x00", "\\x00")


def _cut(text: str) -> str:
    text = clean(text)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def append(session: Session, event: Event, now: float) -> AuditEntry:
    """Append ``event`` at ``now`` and commit; use a session with no pending work of its own.

    The first statement locks the chain head, so the sequence number and previous hash read
    next are the latest ones and stay so until the commit.
    """
    locked = session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == _HEAD_ID)
        .values(seq=AuditHeadRow.seq + 1)
        .execution_options(synchronize_session=False)
    )
    if getattr(locked, "rowcount", 1) != 1:
        session.rollback()
        raise RuntimeError(
            "the audit chain head is missing: the audit_head table was tampered with"
        )
    seq, prev_hash = session.execute(
        select(AuditHeadRow.seq, AuditHeadRow.hash).where(AuditHeadRow.id == _HEAD_ID)
    ).one()
    values = asdict(event)
    values.update(
        ts=float(now),
        actor=_cut(event.actor)[:200],
        role=clean(event.role)[:64],
        action=_cut(event.action)[:200],
        target=_cut(event.target),
        client=clean(event.client)[:200],
        status=int(event.status),
        detail=_cut(event.detail),
    )
    fields = {name: values[name] for name in _FIELDS}
    digest = chain_hash(prev_hash, fields)
    row = AuditEntryRow(seq=seq, prev_hash=prev_hash, hash=digest, **fields)
    session.add(row)
    session.execute(
        update(AuditHeadRow)
        .where(AuditHeadRow.id == _HEAD_ID)
        .values(hash=digest)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return _entry(row)


def list_entries(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    result: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 1000,
) -> list[AuditEntry]:
    """Entries matching every given filter, oldest first; the newest ``limit`` of them.

    ``actor`` and ``result`` match exactly, ``action`` and ``target`` as substrings (the
    values are bound parameters and ``%``/``_`` are escaped: any text is just text).
    """
    actor, action, target, result = (
        None if v is None else clean(v) for v in (actor, action, target, result)
    )
    query = select(AuditEntryRow)
    if actor is not None:
        query = query.where(AuditEntryRow.actor == actor)
    if result is not None:
        query = query.where(AuditEntryRow.result == result)
    if action is not None:
        query = query.where(AuditEntryRow.action.contains(action, autoescape=True))
    if target is not None:
        query = query.where(AuditEntryRow.target.contains(target, autoescape=True))
    if since is not None:
        query = query.where(AuditEntryRow.ts >= since)
    if until is not None:
        query = query.where(AuditEntryRow.ts <= until)
    rows = session.scalars(query.order_by(AuditEntryRow.seq.desc()).limit(limit)).all()
    return [_entry(row) for row in reversed(rows)]


def _moved(rows: list[AuditEntryRow]) -> set[int]:
    """Entries that sit before the entry they were written after, or after their successor."""
    by_hash = {row.hash: row for row in rows}
    successors: dict[str, list[int]] = {}
    for row in rows:
        successors.setdefault(row.prev_hash, []).append(row.seq)
    moved: set[int] = set()
    previous = GENESIS
    for row in rows:
        linked = by_hash.get(row.prev_hash)
        if row.prev_hash != previous and linked is not None:
            later = any(seq < row.seq for seq in successors.get(row.hash, []))
            if linked.seq > row.seq or later:
                moved.add(row.seq)
        previous = row.hash
    return moved


def verify(session: Session) -> Verification:
    """Walk the chain in sequence order and name every entry that was edited, deleted or moved."""
    rows = list(session.scalars(select(AuditEntryRow).order_by(AuditEntryRow.seq)).all())
    head = session.get(AuditHeadRow, _HEAD_ID)
    seq_of = {row.hash: row.seq for row in rows}
    moved = _moved(rows)
    problems: list[Problem] = []
    expected_prev, expected_seq = GENESIS, 1
    for row in rows:
        if chain_hash(row.prev_hash, _fields(row)) != row.hash:
            message = f"entry {row.seq} was edited: its content no longer matches its hash"
            problems.append(Problem(row.seq, "edited", message))
        linked = seq_of.get(row.prev_hash)
        if row.seq in moved:
            message = (
                f"entry {row.seq} is out of order: it was written right after the entry now "
                f"at {linked}"
            )
            problems.append(Problem(row.seq, "reordered", message))
        elif row.prev_hash != expected_prev:
            if linked is not None:
                between = set(range(linked + 1, row.seq))
                if not between <= moved:  # not explained by entries moved in between
                    message = (
                        f"entry {row.seq - 1} does not belong: entry {row.seq} was written "
                        f"right after entry {linked}"
                    )
                    problems.append(Problem(row.seq - 1, "edited", message))
            elif row.seq != expected_seq:
                gone = (
                    str(expected_seq)
                    if row.seq - 1 == expected_seq
                    else f"{expected_seq} to {row.seq - 1}"
                )
                message = (
                    f"entry {gone} was deleted: entry {row.seq} links to a predecessor that is gone"
                )
                problems.append(Problem(expected_seq, "deleted", message))
            else:
                message = (
                    f"entry {row.seq - 1} was replaced: entry {row.seq} links to a "
                    "predecessor hash no entry has"
                )
                problems.append(Problem(max(row.seq - 1, 1), "edited", message))
        elif row.seq != expected_seq:
            message = f"entry {row.seq} was renumbered: it follows entry {expected_seq - 1}"
            problems.append(Problem(row.seq, "edited", message))
        expected_prev, expected_seq = row.hash, row.seq + 1
    last_seq = rows[-1].seq if rows else 0
    head_seq = head.seq if head is not None else -1
    if head is None:
        problems.append(Problem(last_seq, "deleted", "the chain head (audit_head) was deleted"))
    elif head.seq > last_seq:
        gone = str(head.seq) if head.seq == last_seq + 1 else f"{last_seq + 1} to {head.seq}"
        problems.append(
            Problem(
                last_seq + 1,
                "deleted",
                f"entry {gone} was deleted: the chain head "
                f"records {head.seq} entries, the log ends at {last_seq}",
            )
        )
    elif head.seq != last_seq or (rows and head.hash != rows[-1].hash):
        problems.append(
            Problem(
                last_seq,
                "edited",
                f"entry {last_seq} does not match the chain head: "
                "the newest entries were edited or the head was",
            )
        )
    problems.sort(key=lambda p: p.seq)
    return Verification(ok=not problems, entries=len(rows), head_seq=head_seq, problems=problems)
