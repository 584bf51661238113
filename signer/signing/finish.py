"""The hsm worker's half of signing: verify and consume the approval, then sign each document.

Before any C_Sign the worker recomputes the challenge from the database and checks the device
signature, the device and holder, expiry and single use (DESIGN.md section 5). Each document is
claimed with a lease and completed in its own transaction, so a worker killed mid-batch leaves
nothing half-done: a restarted worker picks up the documents not yet COMPLETED, and a document is
never COMPLETED twice.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

import hsm
from signer import audit
from signer.devices import passkeys
from signer.devices.verify import device_signature_ok
from signer.models import User
from signer.services import Services
from signer.signing import challenge as chal
from signer.signing import hashes
from signer.signing import requests as workflow
from signer.signing.errors import CredentialUnusable, DocumentAltered
from signer.signing.material import credential_material
from signer.signing.models import (
    Approval,
    Device,
    DeviceKind,
    DeviceStatus,
    DocKind,
    DocState,
    Reason,
    RequestState,
    Result,
    SignDocument,
    SignRequest,
)
from signer.signing.signer import DocumentSigner

log = logging.getLogger(__name__)
T = TypeVar("T")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def check_approval(session: Session, request: SignRequest, approval: Approval,
                   rp: passkeys.RelyingParty) -> tuple[Reason, Result] | None:
    """Why ``approval`` must not sign ``request``, or None when it may. A passkey's new signature
    counter is stored on its device (committed only with the approval's consumption)."""
    if _aware(approval.created_at) > _aware(request.expires_at):
        return Reason.APPROVAL_EXPIRED, Result.TIMEOUT
    device = session.get(Device, approval.device_id)
    user = session.get(User, approval.user_id)
    if (device is None or user is None or device.status != DeviceStatus.ACTIVE.value or device.user_id != user.id
            or not workflow.may_approve(session, user, request.credential)):
        return Reason.DEVICE_NOT_ALLOWED, Result.FAILED
    dtbsrs = list(session.scalars(select(SignDocument.dtbsr).where(SignDocument.request_id == request.id)
                                  .order_by(SignDocument.position)))
    expected = chal.compute(request.id, request.credential_id, _aware(request.expires_at), dtbsrs)
    if approval.challenge != expected.hex() or request.challenge != expected.hex():
        return Reason.APPROVAL_MISMATCH, Result.FAILED
    valid, sign_count = device_signature_ok(device, approval, expected, rp)
    if not valid:
        return Reason.APPROVAL_INVALID, Result.FAILED
    if sign_count is not None:
        device.sign_count = sign_count
    if chal.verification_code(expected) != approval.verification_code:
        return Reason.APPROVAL_INVALID, Result.WRONG_VC
    return None


def _consume(services: Services, request_id: str) -> bool:
    """Verify and consume the request's approval exactly once; False when nothing may be signed."""
    with services.db.session() as s:
        request = s.get(SignRequest, request_id)
        if request is None or request.state != RequestState.SIGNING.value:
            return False
        approval = s.scalar(select(Approval).where(Approval.request_id == request_id,
                                                   Approval.status.in_(("submitted", "consumed")))
                            .order_by(Approval.created_at.desc()).limit(1))
        if approval is None:
            workflow.fail(s, request, Reason.INTERNAL_ERROR, "no approval found")
            return False
        if approval.status == "consumed":
            return True  # resuming a batch this approval already authorised
        problem = check_approval(s, request, approval,
                                 passkeys.RelyingParty.from_public_url(services.settings.public_url))
        detail: str | None = None
        if problem is None:
            try:
                credential_material(s, services.blobs, request.credential, with_images=False)
            except CredentialUnusable as exc:
                problem, detail = (Reason.CREDENTIAL_UNUSABLE, Result.FAILED), exc.detail
        if problem is not None:
            reason, result = problem
            approval.status, approval.reason = "rejected", reason.value
            # The credential's own words (revoked, suspended, expired) tell the document system more.
            workflow.fail(s, request, reason, detail or f"approval refused: {reason.value}", result)
            audit.record(s, actor="hsm-worker", action="approval.reject", target=f"sign_request:{request.id}",
                         outcome=audit.Outcome.DENIED, organisation_id=request.organisation_id,
                         detail={"approval_id": approval.id, "reason": reason.value})
            return False
        consumed = s.execute(update(Approval).where(Approval.id == approval.id, Approval.status == "submitted")
                             .values(status="consumed", consumed_at=datetime.now(UTC)))
        if consumed.rowcount != 1:  # type: ignore[attr-defined]
            # Another hsm worker consumed it first (a batch split across workers): help with the
            # documents if that worker's consumption committed, else do nothing.
            status = s.scalar(select(Approval.status).where(Approval.id == approval.id))
            return status == "consumed"
        # App keys count their approvals here; a passkey's counter is its authenticator's
        # (set by check_approval, flushed with this transaction).
        s.execute(update(Device).where(Device.id == approval.device_id, Device.kind == DeviceKind.APP_KEY.value)
                  .values(sign_count=Device.sign_count + 1))
        s.execute(update(Device).where(Device.id == approval.device_id).values(last_used_at=datetime.now(UTC)))
        audit.record(s, actor="hsm-worker", action="approval.consume", target=f"sign_request:{request.id}",
                     organisation_id=request.organisation_id,
                     detail={"approval_id": approval.id, "device_id": approval.device_id})
        return True


def _claim(services: Services, doc_id: str) -> str | None:
    token, now = str(uuid.uuid4()), datetime.now(UTC)
    with services.db.session() as s:
        claimed = s.execute(update(SignDocument).where(
            SignDocument.id == doc_id,
            or_(SignDocument.state == DocState.READY.value,
                (SignDocument.state == DocState.SIGNING.value) & (SignDocument.lease_until < now)))
            .values(state=DocState.SIGNING.value, lease_token=token,
                    lease_until=now + timedelta(seconds=services.settings.signing_lease_s)))
        return token if claimed.rowcount == 1 else None  # type: ignore[attr-defined]


def _complete(services: Services, doc_id: str, token: str, *, output: bytes | None,
              reason: Reason | None, detail: str = "") -> None:
    with services.db.session() as s:
        doc = s.scalar(select(SignDocument).where(SignDocument.id == doc_id).with_for_update())
        if doc is None or doc.lease_token != token or doc.state != DocState.SIGNING.value:
            return  # the lease moved on; the other claimant decides this document
        request = doc.request
        if output is not None:
            doc.output_blob = services.blobs.put(output, prefix="signed")
            doc.state, doc.reason = DocState.COMPLETED.value, None
        else:
            doc.state, doc.reason = DocState.FAILED.value, reason.value if reason else None
        doc.completed_at = request.updated_at = datetime.now(UTC)
        audit.record(s, actor="hsm-worker", action="document.sign" if output else "document.fail",
                     target=f"sign_document:{doc.id}", organisation_id=request.organisation_id,
                     outcome=audit.Outcome.SUCCESS if output else audit.Outcome.FAILED,
                     detail={"request_id": request.id, "dtbsr": doc.dtbsr,
                             "reason": doc.reason or "", "error": detail[:200]})


def _close(services: Services, request_id: str) -> str:
    with services.db.session() as s:
        request = s.get(SignRequest, request_id)
        assert request is not None
        if request.state != RequestState.SIGNING.value:
            return request.state
        # Columns, not objects: a batch holds up to 1,000 documents.
        rows = s.execute(select(SignDocument.state, SignDocument.reason)
                         .where(SignDocument.request_id == request_id).order_by(SignDocument.position)).all()
        states = [state for state, _ in rows]
        if any(st in (DocState.READY.value, DocState.SIGNING.value) for st in states):
            return request.state  # another worker still holds a lease
        if all(st == DocState.COMPLETED.value for st in states):
            request.state, request.result = RequestState.COMPLETED.value, Result.OK.value
            request.completed_at = datetime.now(UTC)
            from signer.signing import webhooks

            webhooks.schedule(s, request)
        else:
            first_reason = next(reason for state, reason in rows if state != DocState.COMPLETED.value)
            workflow.fail(s, request, Reason(first_reason or Reason.INTERNAL_ERROR.value),
                          f"{states.count(DocState.COMPLETED.value)} of {len(states)} documents signed")
        audit.record(s, actor="hsm-worker", action="sign_request.close", target=f"sign_request:{request.id}",
                     organisation_id=request.organisation_id, detail={"state": request.state})
        return request.state


class _Overrun(Exception):
    """One document took longer than its time limit."""


def _within(seconds: float, fn: Callable[[], T]) -> T:
    """Run ``fn`` with a wall-clock limit (main thread only; elsewhere no limit).

    A guard, not a cure: the known cause of slow documents (asn1crypto re-encoding whole CMS trees,
    see signer/asn1compat.py) is fixed, but one pathological document must still not hold the
    worker and every request queued behind it. rq's own job timeout uses the same timer: it is
    restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()

    def overrun(_signum: int, _frame: object) -> None:
        raise _Overrun

    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, overrun)
    previous_delay, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay:
            remaining = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 0.001))


def _sign_with_retries(signer: DocumentSigner, doc_id: str, limit_s: float, attempts: int = 3) -> bytes:
    for attempt in range(1, attempts + 1):
        try:
            return _within(limit_s, lambda: signer.sign(doc_id))
        except _Overrun:
            log.warning("document %s: attempt %d exceeded %.0f s; retrying", doc_id, attempt, limit_s)
    raise TimeoutError(f"document {doc_id} could not be signed within {attempts} attempts")


def finish_request(services: Services, request_id: str) -> str:
    """Job body: returns the request's state afterwards."""
    if not _consume(services, request_id):
        with services.db.session() as s:
            request = s.get(SignRequest, request_id)
            return request.state if request else "MISSING"
    signer = DocumentSigner.load(services, request_id)
    pending = signer.pending_documents()
    hash_ids = [doc_id for doc_id, kind in pending if kind == DocKind.HASH.value]
    if hash_ids:
        hashes.finish(services, request_id, hash_ids, signer.sign_hash)
    for doc_id in (doc_id for doc_id, kind in pending if kind != DocKind.HASH.value):
        token = _claim(services, doc_id)
        if token is None:
            continue
        try:
            output = _sign_with_retries(signer, doc_id, services.settings.document_time_limit_s)
        except DocumentAltered as exc:
            _complete(services, doc_id, token, output=None, reason=Reason.DOCUMENT_ALTERED, detail=exc.detail)
        except hsm.HsmUnavailable:
            raise  # the lease expires and the sweeper re-enqueues once the HSM is back
        except Exception as exc:
            log.exception("signing document %s failed", doc_id)
            reason = Reason.HSM_ERROR if isinstance(exc, hsm.HsmError) else Reason.INTERNAL_ERROR
            _complete(services, doc_id, token, output=None, reason=reason, detail=type(exc).__name__)
        else:
            _complete(services, doc_id, token, output=output, reason=None)
    return _close(services, request_id)
