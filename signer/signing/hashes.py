"""Sign-hash documents finished as a batch in the hsm worker.

A raw signature costs one C_Sign (about a millisecond for RSA-2048); claiming, storing and auditing
each hash in transactions of its own would cost ten times that. So the hashes of a request are
claimed, signed and completed in chunks: one lease and one transaction per chunk to claim, the
C_Sign calls, then one transaction that stores the signatures in their rows and appends one audit
row for the chunk. The lease token keeps the guarantee of the per-document path: a document whose
lease moved on (a slow worker, a restarted one) is completed only by its current claimant, once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, bindparam, or_, select

import hsm
from signer import audit
from signer.services import Services
from signer.signing.models import DocState, Reason, SignDocument, SignRequest

log = logging.getLogger(__name__)

#: Hashes per claim/complete transaction: large enough to amortise the round trips, small enough
#: that hsm workers sharing a batch stay balanced, a crash repeats little, and the lease
#: (``signing_lease_s``) covers a chunk many times over.
CHUNK = 250

SignDigest = Callable[[str, bytes], bytes]  # (md_algorithm, digest) -> raw signature


@dataclass(frozen=True)
class _Claimed:
    id: str
    position: int
    dtbsr: str
    md_algorithm: str


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _claim(services: Services, doc_ids: Sequence[str]) -> tuple[str, list[_Claimed]]:
    token, now = str(uuid.uuid4()), datetime.now(UTC)
    table = _table()
    with services.db.session() as s:
        # UPDATE ... RETURNING (SQLite >= 3.35, PostgreSQL): the claim and what to sign in one statement.
        rows = s.execute(table.update().where(
            table.c.id.in_(doc_ids),
            or_(table.c.state == DocState.READY.value,
                (table.c.state == DocState.SIGNING.value) & (table.c.lease_until < now)))
            .values(state=DocState.SIGNING.value, lease_token=token,
                    lease_until=now + timedelta(seconds=services.settings.signing_lease_s))
            .returning(table.c.id, table.c.position, table.c.dtbsr, table.c.md_algorithm)).all()
    return token, sorted((_Claimed(*row) for row in rows), key=lambda d: d.position)


def _table() -> Table:
    table = SignDocument.__table__
    assert isinstance(table, Table)
    return table


def _complete(services: Services, request_id: str, token: str, signed: list[tuple[_Claimed, bytes]],
              failed: list[tuple[_Claimed, str]]) -> None:
    now = datetime.now(UTC)
    table = _table()
    stmt = (table.update()
            .where(table.c.id == bindparam("doc_id"), table.c.lease_token == token,
                   table.c.state == DocState.SIGNING.value)
            .values(state=bindparam("new_state"), signature=bindparam("sig"), reason=bindparam("why"),
                    completed_at=now))
    with services.db.session() as s:
        request = s.get(SignRequest, request_id)
        assert request is not None
        # Only documents still leased to us: the others belong to whoever claimed them since.
        # (One UPDATE ... FROM (VALUES ...) RETURNING was tried: 4x slower on PostgreSQL.)
        held = set(s.scalars(select(table.c.id).where(
            table.c.id.in_([d.id for d, _ in signed] + [d.id for d, _ in failed]),
            table.c.lease_token == token, table.c.state == DocState.SIGNING.value).with_for_update()))
        signed = [(d, sig) for d, sig in signed if d.id in held]
        failed = [(d, err) for d, err in failed if d.id in held]
        rows = [{"doc_id": d.id, "new_state": DocState.COMPLETED.value, "sig": sig, "why": None}
                for d, sig in signed]
        rows += [{"doc_id": d.id, "new_state": DocState.FAILED.value, "sig": None, "why": Reason.HSM_ERROR.value}
                 for d, _ in failed]
        if rows:
            s.connection().execute(stmt, rows)
        request.updated_at = now
        # One row per chunk, listing what the key signed; failures get their own row.
        if signed:
            audit.record(s, actor="hsm-worker", action="hashes.sign", target=f"sign_request:{request_id}",
                         organisation_id=request.organisation_id,
                         detail={"documents": len(signed), "dtbsr": [d.dtbsr for d, _ in signed],
                                 "worker": services.instance})
        if failed:
            audit.record(s, actor="hsm-worker", action="hashes.fail", target=f"sign_request:{request_id}",
                         organisation_id=request.organisation_id, outcome=audit.Outcome.FAILED,
                         detail={"documents": len(failed), "dtbsr": [d.dtbsr for d, _ in failed],
                                 "error": sorted({e for _, e in failed})})


def finish(services: Services, request_id: str, doc_ids: Sequence[str], sign_digest: SignDigest,
           chunk: int = CHUNK) -> None:
    """Sign the raw hashes ``doc_ids`` of ``request_id``; :class:`hsm.HsmUnavailable` propagates
    (the leases expire and the sweeper re-enqueues the request once the HSM is back)."""
    for part in _chunks(doc_ids, chunk):
        token, claimed = _claim(services, part)
        signed: list[tuple[_Claimed, bytes]] = []
        failed: list[tuple[_Claimed, str]] = []
        for doc in claimed:
            try:
                signed.append((doc, sign_digest(doc.md_algorithm, bytes.fromhex(doc.dtbsr))))
            except hsm.HsmUnavailable:
                _complete(services, request_id, token, signed, failed)  # keep what was signed
                raise
            except hsm.HsmError as exc:
                log.error("signing hash %d of request %s failed: %s", doc.position, request_id,
                          type(exc).__name__)
                failed.append((doc, type(exc).__name__))
        _complete(services, request_id, token, signed, failed)
