"""Carry out an approved lifecycle request in the hsm worker (the only process holding the PIN).

Each item runs in its own transaction, so in a bulk request one bad credential fails alone and the
others stand; the outcome of every item is kept on it. Keys are generated in the HSM outside any
transaction (a slow RSA key must not hold the database write lock) and deleted again if the item
fails before it commits. A CRL (and with it the OCSP responses) is published once the revocation
status of any built-in certificate changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update
from sqlalchemy.orm import Session

import hsm
from hsm.keys import private_key
from signer import audit
from signer.credentials import key_fingerprint
from signer.db import Database, after_commit
from signer.errors import SignerError
from signer.lifecycle import profiles
from signer.lifecycle.models import Action, CertificateRequest, CertificateRequestItem, RequestStatus
from signer.models import Credential, CredentialKind
from signer.pki import revocation
from signer.pki.common import signature_hash
from signer.principal import SYSTEM

log = logging.getLogger(__name__)
ACTOR = "system:lifecycle"
DEFAULT_PROFILE = {CredentialKind.PERSONAL.value: "personal-signing",
                   CredentialKind.ORGANISATION.value: "organisation-seal"}


@dataclass(frozen=True)
class Context:
    db: Database
    token: hsm.Hsm
    base_url: str


class ItemFailed(SignerError):
    """An item could not be carried out; its message is kept on the item."""

    status, slug, title, title_vi = 409, "item-failed", "Item failed", "Không thực hiện được"


def make_csr(token: hsm.Hsm, key_label: str, subject: x509.Name) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for the HSM key ``key_label``, signed inside the token."""
    key = private_key(token, key_label)
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, signature_hash(key))
    if not csr.is_signature_valid:  # the token signed with another key than it told us: stop here
        raise ItemFailed("the CSR signature made in the HSM does not verify")
    return csr


def _new_label() -> str:
    return f"cred-{secrets.token_hex(8)}"


def _discard(token: hsm.Hsm, label: str) -> None:
    try:
        token.delete_key(label)
    except Exception:
        log.exception("could not delete HSM key %s of a failed item", label)


def _approvers(request: CertificateRequest) -> list[str]:
    return [d.user_id for d in request.decisions if d.decision == "approve"]


def _audit(session: Session, request: CertificateRequest, item: CertificateRequestItem, action: str,
           credential: Credential | None, **detail: Any) -> None:
    audit.record(session, actor=ACTOR, action=action,
                 target=f"credential:{credential.id}" if credential else f"certificate_request:{request.id}",
                 organisation_id=request.organisation_id,
                 detail={"request": request.id, "item": item.position, "requested_by": request.requested_by,
                         "approved_by": _approvers(request), **detail})


def _profile_for(session: Session, request: CertificateRequest, credential: Credential) -> profiles.CertificateProfile:
    name = request.profile or credential.profile or DEFAULT_PROFILE[credential.kind]
    return profiles.certificate_profile(session, name)


def _certify(ctx: Context, session: Session, request: CertificateRequest, item: CertificateRequestItem,
             credential: Credential, key_label: str, subject: x509.Name,
             cert_profile: profiles.CertificateProfile) -> None:
    """CSR for ``key_label``; the built-in CA certifies it now, the external CA later (import)."""
    from signer.pki.service import certify_credential

    csr = make_csr(ctx.token, key_label, subject)
    item.csr_der = csr.public_bytes(Encoding.DER)
    if request.ca == "external":
        item.status = "awaiting"
        return
    cert = certify_credential(session, ctx.token, SYSTEM, credential, base_url=ctx.base_url, subject=csr.subject,
                              profile=cert_profile.pki_profile())
    credential.profile = cert_profile.name
    row = revocation.current_certificate(session, credential)
    item.certificate_id = row.id if row else None
    item.status = "done"
    _audit(session, request, item, "certificate.issue", credential, serial=format(cert.serial_number, "x"),
           fingerprint=cert.fingerprint(hashes.SHA256()).hex(), profile=cert_profile.name,
           key_sha256=key_fingerprint(_spki(csr)))


def _spki(csr: x509.CertificateSigningRequest) -> bytes:
    from cryptography.hazmat.primitives.serialization import PublicFormat

    return csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _issue(ctx: Context, item_id: str) -> None:
    with ctx.db.session() as session:
        request, item = _load(session, item_id)
        params = request.params
        key_spec = params["key_spec"]
    label = _new_label()
    key = ctx.token.generate_key(label, hsm.KeySpec.parse(key_spec))
    try:
        with ctx.db.session() as session:
            request, item = _load(session, item_id)
            organisation = request.organisation_id
            credential = Credential(
                name=params["name"], kind=params["kind"], organisation_id=organisation,
                owner_user_id=params.get("owner_user_id"), hsm_key_label=key.label, hsm_key_id=key.key_id,
                key_spec=key_spec, public_key_der=key.public_key_der, profile=request.profile)
            session.add(credential)
            session.flush()
            item.credential_id, item.key_label = credential.id, label
            _audit(session, request, item, "credential.register", credential, key_label=label, key_spec=key_spec,
                   key_sha256=key_fingerprint(key.public_key_der))
            assert request.profile
            assert request.subject_profile
            org = credential.organisation
            subject = profiles.subject_profile(session, request.subject_profile).build(params["subject"], org)
            _certify(ctx, session, request, item, credential, label, subject,
                     profiles.certificate_profile(session, request.profile))
    except BaseException:
        _discard(ctx.token, label)
        raise


def _subject_of(credential: Credential) -> x509.Name:
    if credential.certificate_der is None:
        raise ItemFailed("the credential has no certificate to renew")
    return x509.load_der_x509_certificate(credential.certificate_der).subject


def _renew(ctx: Context, item_id: str) -> None:
    with ctx.db.session() as session:
        request, item = _load(session, item_id)
        credential = _credential(session, item)
        _certify(ctx, session, request, item, credential, credential.hsm_key_label, _subject_of(credential),
                 _profile_for(session, request, credential))


def _rekey(ctx: Context, item_id: str) -> None:
    with ctx.db.session() as session:
        _, item = _load(session, item_id)
        key_spec = _credential(session, item).key_spec
    label = _new_label()
    key = ctx.token.generate_key(label, hsm.KeySpec.parse(key_spec))
    try:
        with ctx.db.session() as session:
            request, item = _load(session, item_id)
            credential = _credential(session, item)
            old_label, subject = credential.hsm_key_label, _subject_of(credential)
            old_cert, stopped = revocation.revoke(session, credential, reason="superseded", invalidity_date=None,
                                                  now=dt.datetime.now(dt.UTC))
            credential.hsm_key_label, credential.hsm_key_id = key.label, key.key_id
            credential.public_key_der, item.key_label = key.public_key_der, label
            _certify(ctx, session, request, item, credential, label, subject,
                     _profile_for(session, request, credential))
            _audit(session, request, item, "credential.rekey", credential, old_key_label=old_label,
                   key_label=label, key_sha256=key_fingerprint(key.public_key_der),
                   superseded_serial=old_cert.serial if old_cert else None, requests_failed=stopped)
            # The old key certified nothing valid any more; it goes once the swap is committed.
            token = ctx.token
            after_commit(session, lambda: _discard(token, old_label))
    except BaseException:
        _discard(ctx.token, label)
        raise


def _revoke(ctx: Context, item_id: str) -> None:
    with ctx.db.session() as session:
        request, item = _load(session, item_id)
        credential = _credential(session, item)
        when = request.params.get("invalidity_date")
        cert, stopped = revocation.revoke(session, credential, reason=request.params.get("reason") or "unspecified",
                                          invalidity_date=dt.datetime.fromisoformat(when) if when else None,
                                          now=dt.datetime.now(dt.UTC))
        item.certificate_id, item.status = (cert.id if cert else None), "done"
        if cert is not None and cert.authority_id is None:  # we cannot revoke at the Government CA
            item.error = f"revoked in this service; ask the issuing CA to revoke serial {cert.serial}"
        _audit(session, request, item, "certificate.revoke", credential, reason=request.params.get("reason"),
               serial=cert.serial if cert else None, fingerprint=cert.fingerprint_sha256 if cert else None,
               requests_failed=stopped)


def _suspend(ctx: Context, item_id: str) -> None:
    with ctx.db.session() as session:
        request, item = _load(session, item_id)
        credential = _credential(session, item)
        cert, stopped = revocation.hold(session, credential, now=dt.datetime.now(dt.UTC))
        item.certificate_id, item.status = (cert.id if cert else None), "done"
        _audit(session, request, item, "credential.suspend", credential, serial=cert.serial if cert else None,
               fingerprint=cert.fingerprint_sha256 if cert else None, requests_failed=stopped)


def _resume(ctx: Context, item_id: str) -> None:
    with ctx.db.session() as session:
        request, item = _load(session, item_id)
        credential = _credential(session, item)
        cert = revocation.release(session, credential)
        item.certificate_id, item.status = (cert.id if cert else None), "done"
        _audit(session, request, item, "credential.resume", credential, serial=cert.serial if cert else None,
               fingerprint=cert.fingerprint_sha256 if cert else None)


_HANDLERS = {Action.ISSUE: _issue, Action.RENEW: _renew, Action.REKEY: _rekey, Action.REVOKE: _revoke,
             Action.SUSPEND: _suspend, Action.RESUME: _resume}
# Actions that change what a CRL / OCSP response of the built-in CA says.
_STATUS_CHANGES = {Action.REKEY, Action.REVOKE, Action.SUSPEND, Action.RESUME}


def _load(session: Session, item_id: str) -> tuple[CertificateRequest, CertificateRequestItem]:
    item = session.get(CertificateRequestItem, item_id)
    assert item is not None
    return item.request, item


def _credential(session: Session, item: CertificateRequestItem) -> Credential:
    credential = session.get(Credential, item.credential_id) if item.credential_id else None
    if credential is None:
        raise ItemFailed("the credential no longer exists")
    return credential


def _fail_item(ctx: Context, item_id: str, exc: BaseException) -> None:
    message = exc.detail if isinstance(exc, SignerError) else "internal error (see the service log)"
    if not isinstance(exc, SignerError):
        log.exception("certificate request item %s failed", item_id)
    with ctx.db.session() as session:
        request, item = _load(session, item_id)
        item.status, item.error = "failed", message[:1000]
        audit.record(session, actor=ACTOR, action=f"certificate.{request.action}", outcome="failure",
                     target=f"credential:{item.credential_id}" if item.credential_id else
                     f"certificate_request:{request.id}", organisation_id=request.organisation_id,
                     detail={"request": request.id, "item": item.position, "error": message[:200]})


def execute(ctx: Context, request_id: str) -> str:
    """Carry out an approved request once (a second call finds it claimed); returns its status."""
    with ctx.db.session() as session:
        result = session.execute(update(CertificateRequest).where(
            CertificateRequest.id == request_id, CertificateRequest.status == RequestStatus.APPROVED.value
        ).values(status=RequestStatus.EXECUTING.value))
        claimed = result.rowcount == 1  # type: ignore[attr-defined]
        request = session.get(CertificateRequest, request_id)
        if request is None:
            raise ItemFailed("certificate request not found")
        if not claimed:
            return request.status
        action = Action(request.action)
        item_ids = [i.id for i in request.items if i.status == "pending"]
    for item_id in item_ids:
        try:
            _HANDLERS[action](ctx, item_id)
        except Exception as exc:
            _fail_item(ctx, item_id, exc)
    return _finish(ctx, request_id, publish=action in _STATUS_CHANGES)


def _finish(ctx: Context, request_id: str, *, publish: bool) -> str:
    from signer.pki.service import publish_crls
    from signer.signing.material import authority

    with ctx.db.session() as session:
        request = session.get(CertificateRequest, request_id)
        assert request is not None
        statuses = [i.status for i in request.items]
        if publish and "done" in statuses and authority(session, "issuing") is not None:
            publish_crls(session, ctx.token)
        if "awaiting" in statuses:
            request.status = RequestStatus.AWAITING_CERTIFICATE.value
        else:
            request.status = (RequestStatus.FAILED if all(s == "failed" for s in statuses)
                              else RequestStatus.COMPLETED).value
            request.completed_at = dt.datetime.now(dt.UTC)
        audit.record(session, actor=ACTOR, action="certificate_request.execute",
                     target=f"certificate_request:{request.id}", organisation_id=request.organisation_id,
                     outcome="success" if request.status != RequestStatus.FAILED.value else "failure",
                     detail={"status": request.status, "done": statuses.count("done"),
                             "failed": statuses.count("failed"), "awaiting": statuses.count("awaiting")})
        return request.status


def stale_approved(session: Session, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[str]:
    """Approved requests no worker picked up (Redis was down when they were approved)."""
    now = now or dt.datetime.now(dt.UTC)
    return list(session.scalars(select(CertificateRequest.id).where(
        CertificateRequest.status == RequestStatus.APPROVED.value, CertificateRequest.decided_at <= now - older_than)))


__all__ = ["Context", "ItemFailed", "execute", "make_csr", "stale_approved"]
