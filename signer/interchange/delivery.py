"""Delivering outbox rows to the axis (exchange worker), with leases, backoff and a dead letter.

A row is leased with one conditional UPDATE, so two workers (or a worker and a re-enqueue by the
sweeper) never send it twice at once. Network errors and 5xx (after the client's own retries) put
it back with a doubling wait; a business error from the axis, or too many failures, makes it dead
with the last error kept. The sweeper re-enqueues due rows and rows whose lease ran out: Redis
only carries the nudge, the database carries the work.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from exchange.errors import AxisRejected, ExchangeError
from exchange.transport import MessageType
from signer import audit
from signer.db import after_commit
from signer.errors import Conflict
from signer.interchange.accounts import organisation_code, transport_for
from signer.interchange.models import Incoming, OutboxItem, OutboxState
from signer.models import utcnow
from signer.services import Services

log = logging.getLogger(__name__)


def deliver_after_commit(db: Session, item_ids: list[str]) -> None:
    """Queue the rows' delivery once ``db`` commits (no-op outside a dispatcher-bearing session)."""
    from signer.signing.dispatch import Dispatcher

    dispatcher = db.info.get("dispatcher")
    if isinstance(dispatcher, Dispatcher) and item_ids:
        services = dispatcher.services
        after_commit(db, lambda: enqueue(services, item_ids))


def enqueue(services: Services, item_ids: list[str], *, delay_s: float = 0.0) -> None:
    from signer.jobs.exchange import deliver_item
    from signer.queues import EXCHANGE, queue

    q = queue(services, EXCHANGE)
    for item_id in item_ids:
        kwargs = {"result_ttl": 60, "failure_ttl": 86400, "description": f"deliver outbox {item_id}"}
        if delay_s > 0:
            q.enqueue_in(timedelta(seconds=delay_s), deliver_item, item_id, **kwargs)
        else:
            q.enqueue(deliver_item, item_id, **kwargs)


def _lease(services: Services, item_id: str) -> bool:
    now = utcnow()
    with services.db.session() as db:
        leased = db.execute(
            update(OutboxItem).where(
                OutboxItem.id == item_id,
                or_(
                    (OutboxItem.state == OutboxState.PENDING) & (OutboxItem.next_attempt_at <= now),
                    (OutboxItem.state == OutboxState.SENDING) & (OutboxItem.lease_until < now),
                ),
            ).values(state=OutboxState.SENDING, lease_until=now + timedelta(seconds=services.settings.exchange_lease_s))
        )
        return bool(getattr(leased, "rowcount", 0))


def deliver(services: Services, item_id: str) -> str:
    """One delivery attempt of one outbox row; returns its state afterwards."""
    if not _lease(services, item_id):
        return "skipped"
    with services.db.session(readonly=True) as db:
        item = db.get(OutboxItem, item_id)
        assert item is not None
        org_code = organisation_code(db, item.organisation_id)
        transport = transport_for(services, db, item.organisation_id)
        packet, kind = services.blobs.get(item.packet_blob), item.kind
    message_type = MessageType.STATUS if kind == "status" else MessageType.EDOC
    try:
        axis_doc_id = transport.send(packet, sender=org_code, message_type=message_type)
    except AxisRejected as exc:
        return _failed(services, item_id, f"the axis refused it ({exc.error_code}): {exc}", final=True)
    except (ExchangeError, OSError) as exc:  # AxisUnavailable and the like: try again later
        return _failed(services, item_id, f"{type(exc).__name__}: {exc}", final=False)
    with services.db.session() as db:
        item = db.get(OutboxItem, item_id)
        assert item is not None
        item.state, item.axis_doc_id, item.sent_at = OutboxState.SENT, axis_doc_id, utcnow()
        item.lease_until, item.attempts, item.last_error = None, item.attempts + 1, None
        if item.kind == "status" and item.incoming_id:
            incoming = db.get(Incoming, item.incoming_id)
            if incoming is not None:
                incoming.status_code = item.status_code
        audit.record(db, actor="system:exchange", action="exchange.delivered", target=f"outbox:{item.id}",
                     organisation_id=item.organisation_id,
                     detail={"recipient": item.recipient, "kind": item.kind, "axis_doc_id": axis_doc_id,
                             "status_code": item.status_code})
    return OutboxState.SENT


def _failed(services: Services, item_id: str, error: str, *, final: bool) -> str:
    settings = services.settings
    with services.db.session() as db:
        item = db.get(OutboxItem, item_id)
        assert item is not None
        item.attempts += 1
        item.last_error, item.lease_until = error[:2000], None
        dead = final or item.attempts >= settings.exchange_max_attempts
        if dead:
            item.state = OutboxState.DEAD
            audit.record(db, actor="system:exchange", action="exchange.dead", target=f"outbox:{item.id}",
                         outcome=audit.Outcome.FAILED, organisation_id=item.organisation_id,
                         detail={"recipient": item.recipient, "attempts": item.attempts, "error": error[:500]})
            log.warning("outbox %s is dead after %d attempts: %s", item_id, item.attempts, error)
            return OutboxState.DEAD
        wait = settings.exchange_backoff_s * (2 ** (item.attempts - 1))
        item.state, item.next_attempt_at = OutboxState.PENDING, utcnow() + timedelta(seconds=wait)
        log.info("outbox %s attempt %d failed (%s); next in %.1f s", item_id, item.attempts, error, wait)
    if wait > 0:  # without a wait, a retry now would spin: the sweeper takes it on its next round
        try:
            enqueue(services, [item_id], delay_s=wait)
        except Exception:  # Redis down: the sweeper picks the row up when it is due
            log.warning("could not schedule the retry of outbox %s; the sweeper will", item_id)
    return OutboxState.PENDING


def due(db: Session, limit: int = 500) -> list[str]:
    """Rows that should be on their way: pending and due, or sending with an expired lease."""
    now = utcnow()
    return list(db.scalars(select(OutboxItem.id).where(or_(
        (OutboxItem.state == OutboxState.PENDING) & (OutboxItem.next_attempt_at <= now),
        (OutboxItem.state == OutboxState.SENDING) & (OutboxItem.lease_until < now),
    )).order_by(OutboxItem.next_attempt_at).limit(limit)))


def sweep(services: Services) -> int:
    """Re-enqueue every due row (scheduler task); returns how many."""
    with services.db.session(readonly=True) as db:
        ids = due(db)
    if ids:
        enqueue(services, ids)
    return len(ids)


def retry(db: Session, item_id: str) -> OutboxItem:
    """Give a dead row another round of attempts (an admin's decision after fixing the cause)."""
    item = db.get(OutboxItem, item_id)
    if item is None or item.state != OutboxState.DEAD:
        raise Conflict("only a dead outbox row can be retried")
    item.state, item.attempts, item.next_attempt_at = OutboxState.PENDING, 0, utcnow()
    deliver_after_commit(db, [item.id])
    return item
