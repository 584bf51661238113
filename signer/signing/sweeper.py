"""Periodic tasks of the signing pipeline, run by the scheduler (DB-only work inline; anything
needing a key goes to the hsm queue). Together they make sure nothing accepted is lost: a request
whose job vanished with Redis, or whose worker died mid-batch, is picked up again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from signer.services import Services
from signer.signing import requests as workflow
from signer.signing.dispatch import Dispatcher
from signer.signing.models import Crl, PkiAuthority, RequestState, SignRequest, WebhookDelivery

CRL_REFRESH_BEFORE = timedelta(days=2)


def expire_requests(services: Services) -> list[str]:
    """End requests whose holder did not decide in time (TIMEOUT)."""
    with services.db.session() as s:
        return workflow.expire_due(s)


def resume_signing(services: Services, now: datetime | None = None) -> list[str]:
    """Re-enqueue requests left in SIGNING with no progress for longer than a document lease."""
    now = now or datetime.now(UTC)
    idle = now - timedelta(seconds=services.settings.signing_lease_s)
    with services.db.session() as s:
        stuck = list(s.scalars(select(SignRequest.id).where(
            SignRequest.state == RequestState.SIGNING.value, SignRequest.updated_at < idle)))
    dispatcher = Dispatcher(services)
    for request_id in stuck:
        dispatcher.finish(request_id)
    return stuck


def resend_webhooks(services: Services, now: datetime | None = None) -> list[str]:
    """Re-enqueue deliveries still pending an hour after they were recorded (lost jobs)."""
    now = now or datetime.now(UTC)
    with services.db.session() as s:
        pending = list(s.scalars(select(WebhookDelivery.id).where(
            WebhookDelivery.status == "pending", WebhookDelivery.created_at < now - timedelta(hours=1),
            WebhookDelivery.attempts < 20)))
    dispatcher = Dispatcher(services)
    for delivery_id in pending:
        dispatcher.webhook(delivery_id)
    return pending


def refresh_crls(services: Services, now: datetime | None = None) -> bool:
    """Ask the hsm worker for fresh CRLs when the newest one nears its nextUpdate."""
    now = now or datetime.now(UTC)
    with services.db.session() as s:
        has_ca = s.scalar(select(PkiAuthority.id).where(PkiAuthority.kind == "issuing").limit(1))
        latest = s.scalar(select(Crl.next_update).order_by(Crl.next_update.asc()).limit(1))
    if has_ca is None:
        return False
    if latest is not None:
        latest = latest if latest.tzinfo else latest.replace(tzinfo=UTC)
        if latest - now > CRL_REFRESH_BEFORE:
            return False
    from signer.jobs.pki import refresh_crls as job
    from signer.queues import HSM, queue

    queue(services, HSM).enqueue(job, job_id="refresh-crls", result_ttl=60)
    return True


def refresh_ocsp(services: Services, now: datetime | None = None) -> bool:
    """Ask the hsm worker to re-sign OCSP responses when some are missing, disagree with the
    registry or near their nextUpdate, or when the responder certificate needs renewing."""
    from signer.pki import ocsp

    now = now or datetime.now(UTC)
    with services.db.session(readonly=True) as s:
        if s.scalar(select(PkiAuthority.id).where(PkiAuthority.kind == "issuing").limit(1)) is None:
            return False
        if not ocsp.due_ids(s, now, limit=1) and not ocsp.responder_due(s, now):
            return False
    from signer.jobs.pki import refresh_ocsp as job
    from signer.queues import HSM, queue

    queue(services, HSM).enqueue(job, job_id="refresh-ocsp", result_ttl=60)
    return True
