"""Reading the certificate registry for dashboards: every certificate an organisation's people may
see, including inventory certificates (keys on USB tokens or SIM cards, no credential here)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from signer.authz import READERS, require_roles, visible_organisations
from signer.errors import InvalidInput
from signer.models import Credential, aware
from signer.principal import Principal
from signer.signing.models import IssuedCertificate

#: What ``status`` may filter on: the registry's good/revoked, plus expired (derived from notAfter).
STATUSES = ("good", "revoked", "expired")


def effective_status(cert: IssuedCertificate, now: dt.datetime) -> str:
    """good, revoked or expired; revocation wins over expiry (it is the more telling fact)."""
    if cert.status == "revoked":
        return "revoked"
    return "expired" if aware(cert.not_after) <= now else "good"


@dataclass(frozen=True)
class CertificateRow:
    certificate: IssuedCertificate
    credential_status: str | None  # None for inventory certificates (no credential here)
    status: str  # effective: good | revoked | expired


def list_certificates(session: Session, actor: Principal, *, expiring_within: dt.timedelta | None = None,
                      status: str | None = None, now: dt.datetime | None = None) -> list[CertificateRow]:
    """Certificates of the organisations ``actor`` sees (admins, RA officers, auditors), soonest
    expiry first; ``expiring_within`` keeps the unexpired ones ending within that time."""
    require_roles(actor, READERS, "listing certificates")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status is one of {', '.join(STATUSES)}", field="status")
    now = now or dt.datetime.now(dt.UTC)
    # Outer join: inventory certificates have no credential, and older rows may lack their own
    # organisation_id, so the credential's is the fallback.
    organisation = func.coalesce(IssuedCertificate.organisation_id, Credential.organisation_id)
    query = (select(IssuedCertificate, Credential.status)
             .outerjoin(Credential, Credential.id == IssuedCertificate.credential_id)
             .order_by(IssuedCertificate.not_after, IssuedCertificate.id))
    visible = visible_organisations(session, actor)
    if visible is not None:
        query = query.where(organisation.in_(visible))
    if expiring_within is not None:
        query = query.where(IssuedCertificate.not_after > now, IssuedCertificate.not_after <= now + expiring_within)
    if status == "revoked":
        query = query.where(IssuedCertificate.status == "revoked")
    elif status == "good":
        query = query.where(IssuedCertificate.status == "good", IssuedCertificate.not_after > now)
    elif status == "expired":
        query = query.where(IssuedCertificate.status == "good", IssuedCertificate.not_after <= now)
    return [CertificateRow(cert, credential_status, effective_status(cert, now))
            for cert, credential_status in session.execute(query)]
