"""Certificate expiry (issue 5, items 6 and 7): notices 60, 30 and 7 days before a certificate's
notAfter, and credentials whose certificate has run out stop signing.

The scheduler runs :func:`run`. Marking is database work in one transaction (idempotent: a
certificate's ``notified_days`` records the smallest threshold already told, so a second run tells
nothing new); delivery happens on the exchange worker once that transaction commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import select
from sqlalchemy.orm import Session

from signer import audit, notify
from signer.db import after_commit
from signer.models import Credential, CredentialKind, CredentialStatus, Role, User, aware
from signer.notify import Notification
from signer.services import Services
from signer.signing.models import IssuedCertificate, Reason, RequestState, SignRequest

#: Days before notAfter at which people are told, largest first.
THRESHOLDS = (60, 30, 7)
#: Who hears of an organisation's expiring certificates (besides a personal key's owner).
OFFICERS = frozenset({Role.ADMIN, Role.RA_OFFICER})
ACTOR = "system"


@dataclass(frozen=True)
class ExpiryNotice:
    """One threshold crossed by one certificate (what :func:`notify_expiring` marked)."""

    certificate_id: str
    days: int  # the threshold: 60, 30 or 7
    days_left: int


@dataclass(frozen=True)
class ExpiryNotification(Notification):
    """What a person is told about an expiring certificate; ``expires_at`` is its notAfter.

    A :class:`~signer.notify.Notification` so every configured notifier (live channel, gateway)
    carries it unchanged; the sign-request fields it does not use stay empty.
    """

    certificate_id: str = ""
    serial: str = ""
    holder: str = ""
    days: int = 0
    days_left: int = 0
    message_vi: str = ""
    message_en: str = ""


def threshold_reached(left: dt.timedelta) -> int | None:
    """The smallest threshold ``left`` (time until notAfter) is within, or None before 60 days."""
    reached = [days for days in THRESHOLDS if left <= dt.timedelta(days=days)]
    return min(reached) if reached else None


def _current_fingerprint(credential: Credential) -> str | None:
    der = credential.certificate_der
    return hashlib.sha256(der).hexdigest() if der is not None else None


def superseded(session: Session, cert: IssuedCertificate) -> bool:
    """True when ``cert`` has been renewed: its credential now holds another certificate, or a
    later good certificate exists for the same credential (inventory: the same subject in the same
    organisation)."""
    if cert.credential_id is not None:
        credential = session.get(Credential, cert.credential_id)
        current = _current_fingerprint(credential) if credential is not None else None
        if current is not None and current != cert.fingerprint_sha256:
            return True
        same_holder = IssuedCertificate.credential_id == cert.credential_id
    else:
        same_holder = ((IssuedCertificate.credential_id.is_(None))
                       & (IssuedCertificate.organisation_id == cert.organisation_id)
                       & (IssuedCertificate.subject == cert.subject))
    newer = session.scalar(select(IssuedCertificate.id).where(
        same_holder, IssuedCertificate.id != cert.id, IssuedCertificate.status == "good",
        IssuedCertificate.not_after > cert.not_after).limit(1))
    return newer is not None


def notify_expiring(session: Session, now: dt.datetime | None = None) -> list[ExpiryNotice]:
    """Mark every good certificate that crossed a notice threshold since the last run; each notice
    is audited and, once this transaction commits, delivered on the exchange queue.

    A certificate gets one notice per threshold, only for the smallest one reached: first seen
    with 20 days left, it gets the 30-day notice and later the 7-day one, never the 60-day one.
    """
    now = now or dt.datetime.now(dt.UTC)
    candidates = session.scalars(select(IssuedCertificate).where(
        IssuedCertificate.status == "good", IssuedCertificate.not_after > now,
        IssuedCertificate.not_after <= now + dt.timedelta(days=max(THRESHOLDS)),
        IssuedCertificate.notified_days.is_(None) | (IssuedCertificate.notified_days > min(THRESHOLDS)),
        # Someone's certificates only: the built-in CA's own (issuing CA, TSA, OCSP responder) are
        # the service's, with no organisation to tell.
        IssuedCertificate.credential_id.is_not(None) | (IssuedCertificate.source == "inventory"))
        .order_by(IssuedCertificate.not_after).with_for_update(skip_locked=True)).all()
    notices: list[ExpiryNotice] = []
    for cert in candidates:
        left = aware(cert.not_after) - now
        days = threshold_reached(left)
        if days is None or (cert.notified_days is not None and cert.notified_days <= days):
            continue
        if superseded(session, cert):
            continue  # renewed: its holder has nothing to do
        cert.notified_days = days
        notice = ExpiryNotice(cert.id, days, left.days)
        notices.append(notice)
        audit.record(session, actor=ACTOR, action="certificate.expiry_notice", target=f"certificate:{cert.id}",
                     organisation_id=cert.organisation_id,
                     detail={"serial": cert.serial, "fingerprint": cert.fingerprint_sha256, "days": days,
                             "days_left": left.days, "credential_id": cert.credential_id or "",
                             "source": cert.source})
        _deliver_after_commit(session, notice)
    return notices


def _deliver_after_commit(session: Session, notice: ExpiryNotice) -> None:
    # Delivery is a job on the exchange queue, queued only after the marking commits: a slow or
    # failing gateway never blocks or fails the scheduler's run, and a rolled-back run sends
    # nothing. If Redis is down at that moment the notice is lost (it is marked already), as
    # holder notifications are: the audit row and the dashboard still show it.
    from signer.signing.dispatch import Dispatcher

    dispatcher = session.info.get("dispatcher")
    if not isinstance(dispatcher, Dispatcher):
        return
    services = dispatcher.services

    def enqueue() -> None:
        from signer.jobs.expiry import deliver_expiry_notice
        from signer.queues import EXCHANGE, queue

        queue(services, EXCHANGE).enqueue(deliver_expiry_notice, notice.certificate_id, notice.days,
                                          result_ttl=60, failure_ttl=3600,
                                          description=f"expiry notice ({notice.days} days) for {notice.certificate_id}")

    after_commit(session, enqueue)


def recipients(session: Session, cert: IssuedCertificate) -> list[User]:
    """Who is told: a personal key's owner, and the organisation's admins and RA officers."""
    found: dict[str, User] = {}
    credential = session.get(Credential, cert.credential_id) if cert.credential_id else None
    if credential is not None and credential.kind == CredentialKind.PERSONAL.value and credential.owner_user_id:
        owner = session.get(User, credential.owner_user_id)
        if owner is not None and owner.active:
            found[owner.id] = owner
    organisation_id = cert.organisation_id or (credential.organisation_id if credential else None)
    if organisation_id is not None:
        for user in session.scalars(select(User).where(User.organisation_id == organisation_id,
                                                       User.active.is_(True)).order_by(User.username)):
            if user.roles & OFFICERS:
                found.setdefault(user.id, user)
    return list(found.values())


def holder_name(cert: IssuedCertificate) -> str:
    """The holder as people know them: the inventory record's holder, else the subject's CN."""
    if cert.holder:
        return cert.holder
    try:
        names = x509.load_der_x509_certificate(cert.der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        names = []
    return str(names[0].value) if names else cert.subject


def messages(cert: IssuedCertificate, days_left: int) -> tuple[str, str]:
    """The notice, Vietnamese and English."""
    holder, ends = holder_name(cert), aware(cert.not_after)
    if cert.source == "inventory":
        what_vi = f"Chứng thư số trên thiết bị (USB token/SIM) do {holder} giữ"
        what_en = f"The certificate on the USB token/SIM held by {holder}"
    else:
        what_vi, what_en = f"Chứng thư số của {holder}", f"The certificate of {holder}"
    when_vi = "trong hôm nay" if days_left < 1 else f"sau {days_left} ngày"
    when_en = "today" if days_left < 1 else f"in {days_left} day{'s' if days_left != 1 else ''}"
    return (f"{what_vi} (số hiệu {cert.serial}) sẽ hết hạn {when_vi}, vào ngày {ends:%d/%m/%Y}. "
            "Vui lòng gia hạn trước thời điểm này.",
            f"{what_en} (serial {cert.serial}) expires {when_en}, on {ends:%Y-%m-%d}. Please renew it before then.")


def notifications(session: Session, certificate_id: str, days: int,
                  now: dt.datetime | None = None) -> list[ExpiryNotification]:
    """The notice about ``certificate_id`` for each person told (none if it was revoked since)."""
    now = now or dt.datetime.now(dt.UTC)
    cert = session.get(IssuedCertificate, certificate_id)
    if cert is None or cert.status != "good":
        return []
    days_left = max((aware(cert.not_after) - now).days, 0)
    vi, en = messages(cert, days_left)
    return [ExpiryNotification(
        event="certificate.expiring", request_id="", user_id=user.id, username=user.username, documents=0,
        expires_at=aware(cert.not_after).isoformat(), state="expiring", certificate_id=cert.id,
        serial=cert.serial, holder=holder_name(cert), days=days, days_left=days_left, message_vi=vi,
        message_en=en) for user in recipients(session, cert)]


def deliver(services: Services, certificate_id: str, days: int) -> int:
    """Send one expiry notice through every configured notifier; returns how many deliveries
    failed (logged and counted, never raised: one broken gateway does not stop the others)."""
    with services.db.session(readonly=True) as s:
        items = notifications(s, certificate_id, days)
    return notify.deliver(services, list(items))


def expire_credentials(session: Session, now: dt.datetime | None = None) -> list[str]:
    """Mark expired every active or suspended credential whose current certificate is past its
    notAfter, and end the sign requests waiting for approval or signing with it (FAILED,
    CREDENTIAL_UNUSABLE); returns the credentials' ids."""
    from signer.signing import requests as workflow

    now = now or dt.datetime.now(dt.UTC)
    rows = session.execute(select(IssuedCertificate, Credential)
                           .join(Credential, Credential.id == IssuedCertificate.credential_id)
                           .where(IssuedCertificate.not_after <= now,
                                  Credential.status.in_((CredentialStatus.ACTIVE.value,
                                                         CredentialStatus.SUSPENDED.value)))
                           .order_by(IssuedCertificate.not_after)
                           .with_for_update(of=Credential, skip_locked=True)).all()
    expired: list[str] = []
    for cert, credential in rows:
        # Only the credential's current certificate counts: a renewed credential's old one runs
        # out harmlessly.
        if credential.id in expired or _current_fingerprint(credential) != cert.fingerprint_sha256:
            continue
        previous, credential.status = credential.status, CredentialStatus.EXPIRED.value
        stopped = []
        for request in session.scalars(select(SignRequest).where(
                SignRequest.credential_id == credential.id,
                SignRequest.state.in_((RequestState.AWAITING_APPROVAL.value, RequestState.SIGNING.value)))):
            workflow.fail(session, request, Reason.CREDENTIAL_UNUSABLE, "the credential's certificate has expired")
            stopped.append(request.id)
        audit.record(session, actor=ACTOR, action="credential.expire", target=f"credential:{credential.id}",
                     organisation_id=credential.organisation_id,
                     detail={"serial": cert.serial, "fingerprint": cert.fingerprint_sha256,
                             "not_after": aware(cert.not_after).isoformat(), "previous_status": previous,
                             "requests_failed": stopped})
        expired.append(credential.id)
    return expired


def run(services: Services, now: dt.datetime | None = None) -> dict[str, int]:
    """The scheduler's task: expire credentials, then send the due notices, in one transaction."""
    with services.db.session() as s:
        expired = expire_credentials(s, now)
        notices = notify_expiring(s, now)
    return {"expired": len(expired), "notified": len(notices)}
