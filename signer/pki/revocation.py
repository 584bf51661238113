"""The certificate registry and revocation for the built-in CA.

Every certificate the built-in CA issues is recorded (:func:`record_issued`). Revoking a
credential marks its certificate revoked with an RFC 5280 reason, stops the credential at once
(new sign requests are refused, requests waiting for approval or signing end FAILED) and
re-issues the CRL in the same transaction, so the next CRL fetch lists it.

Lifecycle requests (:mod:`signer.lifecycle`) use :func:`revoke`, :func:`hold` and :func:`release`
after their approvals; :func:`revoke_credential` is the operator's direct, audited action.
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
from signer.models import Credential, CredentialStatus, Role, aware
from signer.principal import Principal
from signer.signing.models import IssuedCertificate, PkiAuthority, Reason, RequestState, SignRequest

REVOKERS = frozenset({Role.ADMIN, Role.RA_OFFICER})
#: RFC 5280 reason names accepted from people (removeFromCRL belongs to delta CRLs, not here).
REASONS = {"unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise"}


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


def current_certificate(session: Session, credential: Credential, *, lock: bool = False) -> IssuedCertificate | None:
    """The newest registry row of ``credential``'s certificates."""
    query = (select(IssuedCertificate).where(IssuedCertificate.credential_id == credential.id)
             .order_by(IssuedCertificate.created_at.desc()).limit(1))
    return session.scalar(query.with_for_update() if lock else query)


def stop_signing(session: Session, credential: Credential, why: str) -> list[str]:
    """End the credential's sign requests waiting for approval or signing (FAILED,
    CREDENTIAL_UNUSABLE); returns their ids."""
    from signer.signing import requests as workflow

    stopped = []
    for request in session.scalars(select(SignRequest).where(
            SignRequest.credential_id == credential.id,
            SignRequest.state.in_((RequestState.AWAITING_APPROVAL.value, RequestState.SIGNING.value)))):
        workflow.fail(session, request, Reason.CREDENTIAL_UNUSABLE, why)
        stopped.append(request.id)
    return stopped


def revoke(session: Session, credential: Credential, *, reason: str, invalidity_date: dt.datetime | None,
           now: dt.datetime) -> tuple[IssuedCertificate | None, list[str]]:
    """Mark the credential and its current certificate revoked and stop its sign requests. The
    caller publishes the CRL (:func:`signer.pki.service.publish_crls`) in the same transaction or
    right after a batch; returns the certificate (if any) and the sign requests stopped."""
    if reason not in REASONS:
        raise InvalidInput(f"reason must be one of {sorted(REASONS)}", field="reason")
    cert = current_certificate(session, credential, lock=True)
    if cert is not None:
        if cert.status == "revoked" and cert.revocation_reason != "certificateHold":
            raise Conflict("the certificate is already revoked")
        cert.status, cert.revoked_at, cert.revocation_reason = "revoked", now, reason
        cert.invalidity_date = invalidity_date
    credential.status, credential.suspended_from = CredentialStatus.REVOKED.value, None
    return cert, stop_signing(session, credential, "the credential's certificate was revoked")


def hold(session: Session, credential: Credential, *, now: dt.datetime) -> tuple[IssuedCertificate | None, list[str]]:
    """Suspend: the credential stops signing here; a built-in certificate is put on hold
    (certificateHold on the CRL and in OCSP). The Government CA has no hold: its certificates
    stay good there, and only this service refuses to use them."""
    if credential.status != CredentialStatus.ACTIVE.value:
        raise Conflict(f"the credential is {credential.status}, not active")
    cert = current_certificate(session, credential, lock=True)
    if cert is not None and cert.authority_id is not None and cert.status == "good":
        cert.status, cert.revoked_at, cert.revocation_reason = "revoked", now, "certificateHold"
    credential.status, credential.suspended_from = CredentialStatus.SUSPENDED.value, credential.status
    return cert, stop_signing(session, credential, "the credential was suspended")


def release(session: Session, credential: Credential) -> IssuedCertificate | None:
    """Resume a suspended credential; a built-in certificate on hold becomes good again."""
    if credential.status != CredentialStatus.SUSPENDED.value:
        raise Conflict(f"the credential is {credential.status}, not suspended")
    cert = current_certificate(session, credential, lock=True)
    if cert is not None and cert.status == "revoked" and cert.revocation_reason == "certificateHold":
        cert.status, cert.revoked_at, cert.revocation_reason = "good", None, None
    credential.status = credential.suspended_from or CredentialStatus.ACTIVE.value
    credential.suspended_from = None
    return cert


def revoke_credential(session: Session, token: hsm.Hsm, actor: Principal, credential_id: str, *, reason: str,
                      invalidity_date: dt.datetime | None = None, now: dt.datetime | None = None) -> IssuedCertificate:
    """Revoke the credential's certificate at once (an operator's direct action, e.g. ``signer ca
    revoke`` after a key compromise), stop the credential and publish a fresh CRL."""
    from signer.pki.service import publish_crls

    require_roles(actor, REVOKERS, "revoking a certificate")
    if reason not in REASONS:
        raise InvalidInput(f"reason must be one of {sorted(REASONS)}", field="reason")
    now = now or dt.datetime.now(dt.UTC)
    if invalidity_date is not None and aware(invalidity_date) > now:
        raise InvalidInput("the invalidity date cannot be in the future", field="invalidity_date")
    credential = session.get(Credential, credential_id)
    if credential is None:
        raise NotFound("credential not found")
    require_organisation(session, actor, credential.organisation_id, "credential")
    if current_certificate(session, credential) is None:
        raise Conflict("this credential has no certificate")
    cert, stopped = revoke(session, credential, reason=reason, invalidity_date=invalidity_date, now=now)
    assert cert is not None
    publish_crls(session, token, now)
    audit.record(session, actor=actor.ref, action="certificate.revoke", target=f"credential:{credential.id}",
                 organisation_id=credential.organisation_id,
                 detail={"serial": cert.serial, "fingerprint": cert.fingerprint_sha256, "reason": reason,
                         "invalidity_date": invalidity_date.isoformat() if invalidity_date else "",
                         "requests_failed": stopped})
    return cert
