"""The OCSP responder of the built-in CA (RFC 6960, in the RFC 5019 "lightweight" profile).

The hsm worker pre-signs one response per certificate of the registry (:class:`IssuedCertificate`
rows with an ``authority_id``) and stores it in ``ocsp_responses``; the web tier, which has no HSM,
serves those bytes as they are (:func:`lookup`). Certificates issued by the issuing CA are answered
by a delegated responder (its own HSM key, a certificate from that CA with id-kp-OCSPSigning and
ocsp-nocheck: PkiAuthority kind ``ocsp``, slug ``ocsp-<ca slug>``); the issuing CA's own
certificate is answered by the root key itself (RFC 6960 4.2.2.2 allows the CA to sign).

When responses are (re)signed:

- the first ``good`` one when a certificate is issued (``certify_credential``, the lifecycle);
- in the transaction that changes a status (``publish_crls``, which revocation calls): a revoked
  certificate, a hold released, a changed reason is visible to OCSP at the same commit as the CRL;
- by the scheduled refresh once less than :data:`REFRESH_WHEN_LEFT` of :data:`RESPONSE_VALIDITY`
  is left, which also re-issues the responder certificate :data:`RESPONDER_RENEW_BEFORE` its end;
- on demand (an RPC to the hsm worker, :func:`respond`) for what the table cannot answer: a serial
  the CA never issued (``unknown``, with a short validity), a CertID hashed with anything but SHA-1,
  or a response gone stale because the scheduler stopped.

Pre-signed responses carry no nonce, also when the request has one: RFC 5019 2.2.1 lets a
responder answer that way so responses can be pre-produced and cached, and clients (openssl,
pyhanko-certvalidator) accept it. Responses signed on demand do echo the nonce.
Unknown issuers get an unsigned ``unauthorized``, unparseable requests ``malformedRequest``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import hsm
from signer import audit
from signer.models import aware
from signer.pki import builtin_ca, revocation
from signer.pki.builtin_ca import CertId
from signer.pki.errors import InvalidInput, PkiError
from signer.pki.profiles import OCSP_RESPONDER
from signer.principal import SYSTEM
from signer.signing.models import IssuedCertificate, OcspResponse, PkiAuthority

#: How long a pre-signed response is valid (its nextUpdate - thisUpdate).
RESPONSE_VALIDITY = dt.timedelta(hours=24)
#: Re-sign once less than this is left, so a stopped scheduler leaves half a day to notice.
REFRESH_WHEN_LEFT = RESPONSE_VALIDITY / 2
#: ``unknown`` answers are short-lived: a serial may belong to a certificate being issued right now.
UNKNOWN_VALIDITY = dt.timedelta(minutes=10)
#: Re-issue the responder certificate (90 days, ocsp-nocheck) when less than this is left.
RESPONDER_RENEW_BEFORE = dt.timedelta(days=30)
RESPONDER_KIND = "ocsp"
RESPONDER_SPEC = "ec-p256"
CA_KINDS = ("root", "issuing")
# Pre-signed responses use SHA-1 CertIDs: what openssl, pyhanko-certvalidator and browsers send.
PRESIGNED_HASH = "sha1"
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
_CHUNK = 200


@dataclass(frozen=True)
class Lookup:
    """What the web tier can answer alone: ``der`` to send as is (a fresh pre-signed response or an
    unsigned error), or ``der=None`` when the hsm worker must sign (:func:`respond`)."""

    der: bytes | None
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None

    @property
    def needs_signing(self) -> bool:
        """Whether the hsm worker has to answer this request."""
        return self.der is None


def _now(now: dt.datetime | None) -> dt.datetime:
    # Whole seconds: what X.509/OCSP times carry, so stored and signed times compare equal.
    return aware(now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)


def _cert(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def error_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned OCSP error response (``malformedRequest``, ``unauthorized``, ``tryLater``)."""
    return builtin_ca.ocsp_error_response(status)


# -- issuers and the responder --------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _issuer_hashes(certificate_der: bytes, algorithm: str) -> tuple[bytes, bytes]:
    cert_id = CertId.for_serial(_cert(certificate_der), 1, _HASHES[algorithm]())
    return cert_id.issuer_name_hash, cert_id.issuer_key_hash


def find_issuer(session: Session, cert_id: CertId) -> PkiAuthority | None:
    """The built-in CA a CertID names (by issuer name and key hash), or ``None``."""
    algorithm = cert_id.hash_algorithm.name
    if algorithm not in _HASHES:
        return None
    wanted = (cert_id.issuer_name_hash, cert_id.issuer_key_hash)
    for ca in session.scalars(select(PkiAuthority).where(PkiAuthority.kind.in_(CA_KINDS))):
        if _issuer_hashes(ca.certificate_der, algorithm) == wanted:
            return ca
    return None


def _base_url(ca_cert: x509.Certificate) -> str:
    # The issuing CA's own AIA names <base>/pki/ocsp: its responder's certificate uses the same base.
    try:
        aia = ca_cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        aia = x509.AuthorityInformationAccess([])
    for desc in aia:
        url = desc.access_location.value
        if desc.access_method == AuthorityInformationAccessOID.OCSP and url.endswith("/pki/ocsp"):
            return str(url).removesuffix("/pki/ocsp")
    raise PkiError("cannot tell the public URL from the CA certificate; pass base_url")


def responder_slug(ca: PkiAuthority) -> str:
    """The slug of the delegated responder answering for ``ca``."""
    return f"ocsp-{ca.slug}"


def ensure_responder(session: Session, token: hsm.Hsm, ca: PkiAuthority | None = None,
                     now: dt.datetime | None = None, *, base_url: str | None = None,
                     spec: str = RESPONDER_SPEC) -> PkiAuthority:
    """The delegated responder of ``ca`` (default: the newest issuing CA), created when missing and
    re-issued (new key, new certificate) when less than :data:`RESPONDER_RENEW_BEFORE` is left.

    A re-issued responder keeps its row (slug); the old key stays in the token, since responses it
    signed remain valid until their nextUpdate. Every issuance is registered and audited.
    """
    now = _now(now)
    if ca is None:
        ca = session.scalar(select(PkiAuthority).where(PkiAuthority.kind == "issuing")
                            .order_by(PkiAuthority.created_at.desc()).limit(1))
        if ca is None:
            raise PkiError("the built-in CA is not initialised (signer ca init)")
    row = session.scalar(select(PkiAuthority).where(PkiAuthority.slug == responder_slug(ca)))
    if row is not None and _cert(row.certificate_der).not_valid_after_utc - now > RESPONDER_RENEW_BEFORE:
        return row
    ca_cert = _cert(ca.certificate_der)
    label = f"pki-ocsp-{secrets.token_hex(4)}"
    key = token.generate_key(label, hsm.KeySpec.parse(spec))
    org = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    organisation = str(org[0].value) if org else "Built-in CA"
    subject = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:64]),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{organisation} OCSP"[:64]),
    ])
    try:
        cert = builtin_ca.issue(token, ca.key_label, ca_cert, key.public_key_der, subject, OCSP_RESPONDER,
                                builtin_ca.CaUrls(base_url or _base_url(ca_cert), ca.slug))
    except BaseException:
        with contextlib.suppress(hsm.HsmError):  # the original error is the one worth reporting
            token.delete_key(label)
        raise
    der = cert.public_bytes(Encoding.DER)
    renewed = row is not None
    if row is None:
        row = PkiAuthority(slug=responder_slug(ca), kind=RESPONDER_KIND, key_label=label, certificate_der=der,
                           issuer_id=ca.id)
        session.add(row)
    else:
        row.key_label, row.certificate_der = label, der
    session.flush()
    revocation.record_issued(session, cert, credential_id=None, authority=ca)
    audit.record(session, actor=SYSTEM.ref, action="pki.ocsp_responder.renew" if renewed else "pki.ocsp_responder",
                 target=f"pki:{row.slug}",
                 detail={"serial": format(cert.serial_number, "x"), "key_label": label,
                         "not_after": cert.not_valid_after_utc.isoformat()})
    return row


def register_authorities(session: Session) -> int:
    """Record the built-in CA's own certificates (issuing CA, TSA, responders) in the registry, so
    OCSP and CRLs cover them like any other; returns how many were added (installs made before)."""
    known = set(session.scalars(select(IssuedCertificate.fingerprint_sha256)
                                .where(IssuedCertificate.credential_id.is_(None))))
    added = 0
    for row in session.scalars(select(PkiAuthority).where(PkiAuthority.issuer_id.is_not(None))).all():
        cert = _cert(row.certificate_der)
        issuer = session.get(PkiAuthority, row.issuer_id)
        if issuer is None or cert.fingerprint(hashes.SHA256()).hex() in known:
            continue
        revocation.record_issued(session, cert, credential_id=None, authority=issuer)
        audit.record(session, actor=SYSTEM.ref, action="certificate.register", target=f"pki:{row.slug}",
                     detail={"serial": format(cert.serial_number, "x"), "issuer": "builtin"})
        added += 1
    return added


# -- pre-signing ---------------------------------------------------------------------------------


def _registry_state(row: IssuedCertificate) -> tuple[str, dt.datetime | None, x509.ReasonFlags | None]:
    if row.status != "revoked":
        return "good", None, None
    at = aware(row.revoked_at or row.created_at).astimezone(dt.UTC).replace(microsecond=0)
    return "revoked", at, revocation.reason_flag(row.revocation_reason)


def _signed_state(der: bytes) -> tuple[str, dt.datetime | None, x509.ReasonFlags | None]:
    resp = ocsp.load_der_ocsp_response(der)
    if resp.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        return "revoked", resp.revocation_time_utc, resp.revocation_reason
    return resp.certificate_status.name.lower(), None, None


def _needs_signing(row: IssuedCertificate, resp: OcspResponse | None, now: dt.datetime) -> bool:
    if resp is None or resp.cert_status != row.status:
        return True
    if aware(resp.next_update) - now < REFRESH_WHEN_LEFT:
        return True
    # Same status word, but a revocation's reason or time may have changed (hold -> keyCompromise).
    return row.status == "revoked" and _signed_state(resp.der) != _registry_state(row)


def due_ids(session: Session, now: dt.datetime | None = None, limit: int | None = None) -> list[str]:
    """Unexpired built-in certificates whose response is missing, disagrees with the registry's
    status word, or nears its nextUpdate (a DB-only check, for the scheduler)."""
    now = _now(now)
    query = (select(IssuedCertificate.id)
             .outerjoin(OcspResponse, OcspResponse.certificate_id == IssuedCertificate.id)
             .where(IssuedCertificate.authority_id.is_not(None), IssuedCertificate.not_after > now,
                    or_(OcspResponse.certificate_id.is_(None),
                        OcspResponse.cert_status != IssuedCertificate.status,
                        OcspResponse.next_update < now + REFRESH_WHEN_LEFT))
             .order_by(IssuedCertificate.id))
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def changed_certificates(session: Session) -> list[IssuedCertificate]:
    """Built-in certificates whose pre-signed response no longer says what the registry says:
    revoked since, released from hold, or revoked with another reason or time."""
    rows = session.execute(
        select(IssuedCertificate, OcspResponse)
        .outerjoin(OcspResponse, OcspResponse.certificate_id == IssuedCertificate.id)
        .where(IssuedCertificate.authority_id.is_not(None),
               or_(IssuedCertificate.status == "revoked",
                   and_(OcspResponse.certificate_id.is_not(None),
                        OcspResponse.cert_status != IssuedCertificate.status))))
    return [cert for cert, resp in rows
            if resp is None or resp.cert_status != cert.status
            or _signed_state(resp.der) != _registry_state(cert)]


def responder_due(session: Session, now: dt.datetime | None = None) -> bool:
    """Whether an issuing CA lacks its responder or the responder certificate nears its end."""
    now = _now(now)
    for ca in session.scalars(select(PkiAuthority).where(PkiAuthority.kind == "issuing")):
        row = session.scalar(select(PkiAuthority).where(PkiAuthority.slug == responder_slug(ca)))
        if row is None or _cert(row.certificate_der).not_valid_after_utc - now <= RESPONDER_RENEW_BEFORE:
            return True
    return False


class _Responders:
    """Who signs for each CA during one refresh: the delegated responder for an issuing CA (made
    or renewed on first use), the root key itself for the root's certificates."""

    def __init__(self, session: Session, token: hsm.Hsm, now: dt.datetime) -> None:
        self.session, self.token, self.now = session, token, now
        self._cache: dict[str, tuple[str, x509.Certificate]] = {}

    def __call__(self, ca: PkiAuthority) -> tuple[str, x509.Certificate]:
        if ca.id not in self._cache:
            if ca.kind == "issuing":
                row = ensure_responder(self.session, self.token, ca, self.now)
                self._cache[ca.id] = (row.key_label, _cert(row.certificate_der))
            else:
                self._cache[ca.id] = (ca.key_label, _cert(ca.certificate_der))
        return self._cache[ca.id]


def _sign(token: hsm.Hsm, responder: tuple[str, x509.Certificate], cert_id: CertId,
          state: tuple[str, dt.datetime | None, x509.ReasonFlags | None], this_update: dt.datetime,
          next_update: dt.datetime, nonce: bytes | None = None) -> bytes:
    status, revoked_at, reason = state
    return builtin_ca.make_ocsp_response(
        token, responder[0], responder[1], cert_id, ocsp.OCSPCertStatus[status.upper()],
        this_update=this_update, next_update=next_update, revoked_at=revoked_at, reason=reason, nonce=nonce)


def _store(session: Session, row: IssuedCertificate, der: bytes, status: str, this_update: dt.datetime,
           next_update: dt.datetime) -> None:
    existing = session.get(OcspResponse, row.id)
    if existing is not None:
        existing.der, existing.cert_status = der, status
        existing.this_update, existing.next_update = this_update, next_update
        return
    try:
        with session.begin_nested():
            session.add(OcspResponse(certificate_id=row.id, der=der, cert_status=status,
                                     this_update=this_update, next_update=next_update))
    except IntegrityError:
        # Another worker stored one for this certificate a moment ago, from the same locked row.
        return


def refresh(session: Session, token: hsm.Hsm, now: dt.datetime | None = None,
            certificates: Sequence[IssuedCertificate] | None = None, *, force: bool = False) -> int:
    """Pre-sign the responses that need it; returns how many were signed.

    ``certificates=None`` looks at every due certificate (:func:`due_ids`, plus revoked ones whose
    reason or time changed) after registering the CA's own certificates; otherwise only those
    given (e.g. one just issued or revoked, by the caller that changed it, in its transaction).
    ``force`` re-signs even fresh responses. Rows are locked first, so a concurrent revocation is
    never overwritten by a response signed from the status read before it.
    """
    now = _now(now)
    if certificates is None:
        register_authorities(session)
        ids = sorted(set(due_ids(session, now)) | {c.id for c in changed_certificates(session)})
    else:
        ids = sorted({c.id for c in certificates})
    if not ids:
        return 0
    session.flush()
    responders = _Responders(session, token, now)
    cas: dict[str, PkiAuthority | None] = {}
    signed = 0
    for start in range(0, len(ids), _CHUNK):
        rows = session.scalars(select(IssuedCertificate).where(IssuedCertificate.id.in_(ids[start:start + _CHUNK]))
                               .order_by(IssuedCertificate.id).with_for_update()
                               .execution_options(populate_existing=True))
        for row in rows:
            if row.authority_id is None:
                continue  # not ours (external, inventory): their CA answers for them
            if row.authority_id not in cas:
                cas[row.authority_id] = session.get(PkiAuthority, row.authority_id)
            ca = cas[row.authority_id]
            if ca is None or ca.kind not in CA_KINDS:
                continue
            resp = session.get(OcspResponse, row.id)
            if not force and not _needs_signing(row, resp, now):
                continue
            state = _registry_state(row)
            cert_id = CertId.for_serial(_cert(ca.certificate_der), int(row.serial, 16), _HASHES[PRESIGNED_HASH]())
            der = _sign(token, responders(ca), cert_id, state, now, now + RESPONSE_VALIDITY)
            _store(session, row, der, state[0], now, now + RESPONSE_VALIDITY)
            signed += 1
    session.flush()
    return signed


# -- answering -----------------------------------------------------------------------------------


def _registry_row(session: Session, ca: PkiAuthority, serial: int) -> IssuedCertificate | None:
    return session.scalar(select(IssuedCertificate).where(
        IssuedCertificate.authority_id == ca.id, IssuedCertificate.serial == format(serial, "x")))


def lookup(session: Session, request_der: bytes, now: dt.datetime | None = None) -> Lookup:
    """Answer from the pre-signed table (web tier; reads only, signs nothing)."""
    now = _now(now)
    try:
        query = builtin_ca.parse_ocsp_request(request_der)
    except InvalidInput:
        return Lookup(error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST))
    ca = find_issuer(session, query.cert_id)
    if ca is None:
        return Lookup(error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED))
    if query.cert_id.hash_algorithm.name != PRESIGNED_HASH:
        return Lookup(None)
    row = _registry_row(session, ca, query.cert_id.serial)
    if row is None:
        return Lookup(None)
    resp = session.get(OcspResponse, row.id)
    # A stale response, or one the registry contradicts (a status changed without refresh), is
    # never served: the hsm worker signs a fresh one instead.
    if resp is None or resp.cert_status != row.status or aware(resp.next_update) <= now:
        return Lookup(None)
    return Lookup(resp.der, aware(resp.this_update), aware(resp.next_update))


def respond(session: Session, token: hsm.Hsm, request_der: bytes, now: dt.datetime | None = None) -> bytes:
    """Answer one OCSP request in the hsm worker: refresh and return the stored response of a known
    certificate, or sign one for this request (``unknown`` serials, non-SHA-1 CertIDs)."""
    now = _now(now)
    try:
        query = builtin_ca.parse_ocsp_request(request_der)
    except InvalidInput:
        return error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    ca = find_issuer(session, query.cert_id)
    if ca is None:
        return error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
    row = _registry_row(session, ca, query.cert_id.serial)
    if row is not None and query.cert_id.hash_algorithm.name == PRESIGNED_HASH:
        refresh(session, token, now, [row])
        stored = session.get(OcspResponse, row.id)
        if stored is not None:
            return stored.der
    if row is None:
        state: tuple[str, dt.datetime | None, x509.ReasonFlags | None] = ("unknown", None, None)
        validity = UNKNOWN_VALIDITY
    else:
        state, validity = _registry_state(row), RESPONSE_VALIDITY
    return _sign(token, _Responders(session, token, now)(ca), query.cert_id, state, now, now + validity,
                 nonce=query.nonce)


__all__ = [
    "CA_KINDS", "PRESIGNED_HASH", "REFRESH_WHEN_LEFT", "RESPONDER_KIND", "RESPONDER_RENEW_BEFORE",
    "RESPONSE_VALIDITY", "UNKNOWN_VALIDITY", "Lookup", "changed_certificates", "due_ids", "ensure_responder",
    "error_response", "find_issuer", "lookup", "refresh", "register_authorities", "respond", "responder_due",
    "responder_slug",
]
