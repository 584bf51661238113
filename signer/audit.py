"""Append-only audit log, each row chained to the previous one by SHA-256.

A row's hash covers a canonical JSON encoding (version 1) of its fields plus the previous row's
hash, so changing, inserting or deleting any row breaks the chain at that row; the head row
(``audit_head``) catches a truncated tail. Writers lock the head row, which keeps the chain linear
across processes and hosts (row lock on PostgreSQL, BEGIN IMMEDIATE on SQLite).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from signer.db import Database
from signer.models import AuditEvent, AuditHead

GENESIS = "0" * 64
CANONICAL_VERSION = 1


class Outcome:
    SUCCESS = "success"
    DENIED = "denied"
    FAILED = "failed"


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def row_hash(*, seq: int, at: str, actor: str, action: str, target: str, outcome: str,
             organisation_id: str | None, detail: str, prev_hash: str) -> str:
    """SHA-256 over the canonical encoding of one row and its predecessor's hash."""
    body = canonical_json({
        "v": CANONICAL_VERSION, "seq": seq, "at": at, "actor": actor, "action": action,
        "target": target, "outcome": outcome, "org": organisation_id, "detail": detail,
        "prev": prev_hash,
    })
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record(session: Session, *, actor: str, action: str, target: str = "",
           outcome: str = Outcome.SUCCESS, organisation_id: str | None = None,
           detail: dict[str, Any] | None = None) -> AuditEvent:
    """Append one row inside the caller's transaction (so it commits or rolls back with it).

    ``detail`` must never hold PINs, secrets, document contents or key material.
    """
    head = session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).scalar_one()
    seq = head.seq + 1
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    detail_json = canonical_json(detail or {})
    digest = row_hash(seq=seq, at=at, actor=actor, action=action, target=target, outcome=outcome,
                      organisation_id=organisation_id, detail=detail_json, prev_hash=head.hash)
    event = AuditEvent(seq=seq, at=at, actor=actor, action=action, target=target, outcome=outcome,
                       organisation_id=organisation_id, detail=detail_json, prev_hash=head.hash,
                       hash=digest)
    session.add(event)
    head.seq, head.hash = seq, digest
    session.flush()
    return event


def record_now(db: Database, **fields: Any) -> None:
    """Append one row in its own transaction (denied or failed actions whose work rolls back)."""
    with db.session() as session:
        record(session, **fields)


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.ok:
            return f"audit chain intact: {self.checked} rows"
        where = "the chain head" if self.broken_seq is None else f"row {self.broken_seq}"
        return f"audit chain broken at {where}: {self.reason} ({self.checked} rows checked before it)"


def _check_row(event: AuditEvent, expected_seq: int, prev: str) -> str:
    """Why ``event`` breaks the chain, or an empty string."""
    if event.seq != expected_seq:
        return f"expected row {expected_seq} before it"
    if event.prev_hash != prev:
        return "previous-hash link does not match"
    digest = row_hash(seq=event.seq, at=event.at, actor=event.actor, action=event.action,
                      target=event.target, outcome=event.outcome,
                      organisation_id=event.organisation_id, detail=event.detail,
                      prev_hash=event.prev_hash)
    return "" if digest == event.hash else "row content does not match its hash"


def _read_head(session: Session) -> tuple[int, str] | None:
    # Plain columns, not the entity: a second read in the same session must not be answered
    # from the identity map.
    row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).first()
    return None if row is None else (row.seq, row.hash)


def _walk(session: Session, head_seq: int, head_hash: str, batch: int) -> VerifyReport:
    """Check every row in order; the row at ``head_seq`` must carry the head's hash. ``ok`` here
    only means no row broke the chain; the caller still compares the count with the head."""
    expected_seq, prev, checked = 1, GENESIS, 0
    query = select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=batch)
    # Closed explicitly: on PostgreSQL yield_per holds a server-side cursor.
    with session.execute(query) as rows:
        for event in rows.scalars():
            problem = _check_row(event, expected_seq, prev)
            if problem and event.seq > expected_seq:  # a gap: name the row that is not there
                return VerifyReport(False, checked, expected_seq,
                                    f"row {expected_seq} is missing (deleted or renumbered; "
                                    f"row {event.seq} follows row {expected_seq - 1})")
            if problem:
                return VerifyReport(False, checked, event.seq, problem)
            if event.seq == head_seq and event.hash != head_hash:
                return VerifyReport(False, checked + 1, None,
                                    f"head does not match row {event.seq} (rows replaced?)")
            prev, expected_seq, checked = event.hash, expected_seq + 1, checked + 1
    return VerifyReport(True, checked)


def verify(session: Session, batch: int = 1000) -> VerifyReport:
    """Walk the chain from the first row; report the first row that does not link or hash.

    Safe while others append, also under READ COMMITTED (PostgreSQL), where the head and the rows
    are read by separate statements: the head is read first, so every row up to it is committed
    and visible to the row scan, which must reach it with the head's hash (a truncated tail
    fails). Rows committed after the head was read are checked too; a re-read of the head must
    then cover them (a row appended without moving the head is named).
    """
    head = _read_head(session)
    if head is None:
        return VerifyReport(False, 0, None, "the chain head row is missing")
    head_seq, head_hash = head
    if head_seq == 0 and head_hash != GENESIS:
        return VerifyReport(False, 0, None, "head does not match the empty chain")
    report = _walk(session, head_seq, head_hash, batch)
    if not report.ok:
        return report
    if report.checked < head_seq:
        return VerifyReport(False, report.checked, None,
                            "head does not match the last row (rows removed?)")
    if report.checked > head_seq:  # rows committed since the head was read, or forged ones
        latest = _read_head(session)
        covered = latest[0] if latest is not None else head_seq
        if covered < report.checked:
            return VerifyReport(False, covered, covered + 1,
                                f"row {covered + 1} is past the chain head (inserted?)")
    return report
