"""The certificate registry and revocation for the built-in CA.

Every certificate the built-in CA issues is recorded (:func:`record_issued`). Revoking a
credential marks its certificate revoked with an RFC 5280 reason, stops the credential at once
(new sign requests are refused, requests waiting for approval or signing end FAILED) and
re-issues the CRL in the same transaction, so the next CRL fetch lists it.

Approval policies for lifecycle requests (N approvers, no self-approval) come with the rest of the
certificate lifecycle; here revocation is an admin's or RA officer's direct, audited action.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

import hsm
from signer import audit
from signer.authz import require_organisation, require_roles
from signer.errors import Conflict, InvalidInput, NotFound
from signer.models import Credential, CredentialStatus, Role
from signer.principal import Principal
from signer.signing.models import IssuedCertificate, PkiAuthority, Reason, RequestState, SignRequest

REVOKERS = frozenset({Role.ADMIN, Role.RA_OFFICER})
#: RFC 5280 reason names accepted from people (removeFromCRL belongs to delta CRLs, not here).
REASONS = {"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"}


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def record_issued(session: Session, cert: x509.Certificate, *, credential_id: str | None,
                  authority: PkiAuthority | None, organisation_id: str | None = None,
                  source: str = "builtin", holder: str | None = None) -> IssuedCertificate:
    """Add ``cert`` to the certificate registry (the source of CRLs, OCSP and expiry notices)."""
    der = cert.public_bytes(Encoding.DER)
    if organisation_id is None and credential_id is not None:
        credential = session.get(Credential, credential_id)
        organisation_id = credential.organisation_id if credential else None
    row = IssuedCertificate(
        credential_id=credential_id, authority_id=authority.id if authority else None,
        organisation_id=organisation_id, source=source, holder=holder,
        issuer_sha256=hashlib.sha256(cert.issuer.public_bytes()).hexdigest(), serial=format(cert.serial_number, "x"),
        subject=cert.subject.rfc4514_string()[:1024], fingerprint_sha256=hashlib.sha256(der).hexdigest(), der=der,
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)
    session.add(row)
    session.flush()
    return row


def reason_flag(name: str | None) -> x509.ReasonFlags | None:
    """The cryptography flag for an RFC 5280 reason name (``None`` for no reason code)."""
    if name is None or name == "unspecified":
        return None
    return x509.ReasonFlags[{"keyCompromise": "key_compromise", "cACompromise": "ca_compromise",
                             "affiliationChanged": "affiliation_changed", "superseded": "superseded",
                             "cessationOfOperation": "cessation_of_operation",
                             "certificateHold": "certificate_hold", "privilegeWithdrawn": "privilege_withdrawn",
                             "aACompromise": "aa_compromise"}[name]]


def revoke_credential(session: Session, token: hsm.Hsm, actor: Principal, credential_id: str, *, reason: str,
                      invalidity_date: dt.datetime | None = None, now: dt.datetime | None = None) -> IssuedCertificate:
    """Revoke the credential's certificate, stop the credential and publish a fresh CRL."""
    from signer.pki.service import publish_crls
    from signer.signing import requests as workflow

    require_roles(actor, REVOKERS, "revoking a certificate")
    if reason not in REASONS:
        raise InvalidInput(f"reason must be one of {sorted(REASONS)}", field="reason")
    now = now or dt.datetime.now(dt.UTC)
    if invalidity_date is not None and _aware(invalidity_date) > now:
        raise InvalidInput("the invalidity date cannot be in the future", field="invalidity_date")
    credential = session.get(Credential, credential_id)
    if credential is None:
        raise NotFound("credential not found")
    require_organisation(session, actor, credential.organisation_id, "credential")
    cert = session.scalar(select(IssuedCertificate).where(IssuedCertificate.credential_id == credential.id)
                          .order_by(IssuedCertificate.created_at.desc()).limit(1).with_for_update())
    if cert is None:
        raise Conflict("this credential has no certificate from the built-in CA")
    if cert.status == "revoked":
        raise Conflict("the certificate is already revoked")
    cert.status, cert.revoked_at, cert.revocation_reason = "revoked", now, reason
    cert.invalidity_date = invalidity_date
    credential.status = CredentialStatus.REVOKED.value
    stopped = []
    for request in session.scalars(select(SignRequest).where(
            SignRequest.credential_id == credential.id,
            SignRequest.state.in_((RequestState.AWAITING_APPROVAL.value, RequestState.SIGNING.value)))):
        workflow.fail(session, request, Reason.CREDENTIAL_UNUSABLE, "the credential's certificate was revoked")
        stopped.append(request.id)
    publish_crls(session, token, now)
    audit.record(session, actor=actor.ref, action="certificate.revoke", target=f"credential:{credential.id}",
                 organisation_id=credential.organisation_id,
                 detail={"serial": cert.serial, "fingerprint": cert.fingerprint_sha256, "reason": reason,
                         "invalidity_date": invalidity_date.isoformat() if invalidity_date else "",
                         "requests_failed": stopped})
    return cert


def list_certificates(session: Session, actor: Principal, *, expiring_within: dt.timedelta | None = None,
                      status: str | None = None, now: dt.datetime | None = None) -> list[IssuedCertificate]:
    """Certificates of the organisations ``actor`` sees (admins, RA officers, auditors), soonest
    expiry first; ``expiring_within`` keeps the unexpired ones ending within that time."""
    from signer.authz import READERS, visible_organisations

    require_roles(actor, READERS, "listing certificates")
    now = now or dt.datetime.now(dt.UTC)
    query = (select(IssuedCertificate).join(Credential, Credential.id == IssuedCertificate.credential_id)
             .order_by(IssuedCertificate.not_after))
    visible = visible_organisations(session, actor)
    if visible is not None:
        query = query.where(Credential.organisation_id.in_(visible))
    if expiring_within is not None:
        query = query.where(IssuedCertificate.not_after > now, IssuedCertificate.not_after <= now + expiring_within)
    if status is not None:
        query = query.where(IssuedCertificate.status == status)
    return list(session.scalars(query))
