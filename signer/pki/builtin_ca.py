"""The built-in CA: root and issuing CAs, end-entity certificates, CRLs and OCSP responses.

Every signature is made by an HSM key through :func:`hsm.keys.private_key`; this module holds no
private key material and no state. The caller persists certificates, serials and revocations.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from hsm import Hsm, HsmError, KeySpec
from hsm.keys import private_key
from signer.pki.common import (
    HsmPrivateKey,
    PublicKey,
    cert_public_key,
    has_eku,
    issuer_key,
    load_public_key,
    now,
    signature_hash,
    signing_key,
    spki,
    utc,
)
from signer.pki.errors import InvalidInput, IssuerMismatch, PkiError
from signer.pki.profiles import ISSUING_CA, ROOT_CA, Profile

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_MAX_SERIAL = 1 << 159  # RFC 5280 4.1.2.2: at most 20 octets, positive
# A little backdating so a certificate is usable at once on a host whose clock runs slightly behind.
_BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class CaUrls:
    """Where relying parties find the issuing CA's CRL, OCSP responder and certificate.

    ``CaUrls("http://127.0.0.1:8000", "issuing-1")`` gives
    ``http://127.0.0.1:8000/pki/crl/issuing-1.crl``, ``.../pki/ocsp`` and ``.../pki/ca/issuing-1.cer``.
    The slug names the CA that *issues* the certificate these URLs are put into.
    """

    base: str
    ca_slug: str

    def __post_init__(self) -> None:
        if not re.match(r"^https?://[^/?#\s]+(/[^?#\s]*)?$", self.base):
            raise InvalidInput(f"CA base URL must be an http(s) URL without query: {self.base!r}")
        if not _SLUG_RE.match(self.ca_slug):
            raise InvalidInput(f"CA slug must be lowercase letters, digits and '-': {self.ca_slug!r}")
        object.__setattr__(self, "base", self.base.rstrip("/"))

    @property
    def crl_url(self) -> str:
        return f"{self.base}/pki/crl/{self.ca_slug}.crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.base}/pki/ocsp"

    @property
    def ca_issuers_url(self) -> str:
        return f"{self.base}/pki/ca/{self.ca_slug}.cer"


@dataclass(frozen=True)
class RevokedEntry:
    """One line of a CRL. ``reason=None`` (or ``unspecified``) leaves out the reasonCode."""

    serial: int
    revoked_at: dt.datetime
    reason: x509.ReasonFlags | None = None
    invalidity_date: dt.datetime | None = None


def _aki(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(cert_public_key(issuer_cert))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _check_serial(serial: int, what: str = "serial") -> int:
    if not 0 < serial < _MAX_SERIAL:
        raise InvalidInput(f"{what} must be positive and fit in 20 octets")
    return serial


def _build(*, subject: x509.Name, public_key: PublicKey,
           profile: Profile, signer: HsmPrivateKey, issuer_cert: x509.Certificate | None,
           urls: CaUrls | None, not_before: dt.datetime | None, validity_days: int | None,
           serial: int | None) -> x509.Certificate:
    start = now() - _BACKDATE if not_before is None else utc(not_before, "not_before")
    days = profile.validity_days if validity_days is None else validity_days
    if days <= 0:
        raise InvalidInput("validity_days must be positive")
    end = start + dt.timedelta(days=days)
    if issuer_cert is not None:
        # A certificate must not outlive its issuer: relying parties would reject the tail anyway.
        end = min(end, issuer_cert.not_valid_after_utc)
    if end <= start:
        raise InvalidInput("the certificate would end before it starts (issuer expires too soon?)")
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer_cert is None else issuer_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else _check_serial(serial))
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length),
                       critical=True)
        .add_extension(profile.key_usage_extension(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(_aki(issuer_cert), critical=False)
    if profile.extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(profile.extended_key_usage)),
                                        critical=profile.eku_critical)
    policies = profile.policies_extension()
    if policies is not None:
        builder = builder.add_extension(policies, critical=False)
    if profile.ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    if profile.revocation_info and issuer_cert is not None:
        if urls is None:
            raise InvalidInput(f"profile {profile.name} needs CA URLs for AIA and CRL distribution points")
        builder = builder.add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(urls.ocsp_url)),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(urls.ca_issuers_url)),
        ]), critical=False)
        builder = builder.add_extension(x509.CRLDistributionPoints([
            x509.DistributionPoint([x509.UniformResourceIdentifier(urls.crl_url)], None, None, None),
        ]), critical=False)
    return builder.sign(signer, signature_hash(signer))


def _generate(hsm: Hsm, key_label: str, spec: KeySpec) -> PublicKey:
    return load_public_key(hsm.generate_key(key_label, spec).public_key_der)


def _discard_key(hsm: Hsm, key_label: str) -> None:
    # A CA key without its certificate is useless and would block the label: remove it. The
    # original error is the one worth reporting.
    with contextlib.suppress(HsmError):
        hsm.delete_key(key_label)


# -- certificates --------------------------------------------------------------------------------


def create_root(hsm: Hsm, key_label: str, subject: x509.Name, spec: KeySpec,
                validity_days: int = ROOT_CA.validity_days, *,
                profile: Profile = ROOT_CA) -> x509.Certificate:
    """Generate a root CA key in the HSM and return its self-signed certificate."""
    public_key = _generate(hsm, key_label, spec)
    try:
        return _build(subject=subject, public_key=public_key, profile=profile,
                      signer=private_key(hsm, key_label),
                      issuer_cert=None, urls=None, not_before=None, validity_days=validity_days,
                      serial=None)
    except BaseException:
        _discard_key(hsm, key_label)
        raise


def create_issuing(hsm: Hsm, key_label: str, subject: x509.Name, spec: KeySpec,
                   issuer_label: str, issuer_cert: x509.Certificate, urls: CaUrls, *,
                   validity_days: int | None = None, profile: Profile = ISSUING_CA) -> x509.Certificate:
    """Generate an issuing CA key in the HSM and certify it with the (root) CA ``issuer_label``.

    ``urls`` describe the issuer (its CRL, OCSP and certificate), as for any certificate it issues.
    """
    public_key = _generate(hsm, key_label, spec)
    try:
        return issue(hsm, issuer_label, issuer_cert, spki(public_key), subject, profile, urls,
                     validity_days=validity_days)
    except BaseException:
        _discard_key(hsm, key_label)
        raise


def issue(hsm: Hsm, issuer_label: str, issuer_cert: x509.Certificate, public_key_der: bytes,
          subject: x509.Name, profile: Profile, urls: CaUrls, *, not_before: dt.datetime | None = None,
          validity_days: int | None = None, serial: int | None = None) -> x509.Certificate:
    """Certify ``public_key_der`` (DER SubjectPublicKeyInfo) under ``profile``, signed in the HSM.

    The serial is 159 random bits unless given. AIA and CRL DP come from ``urls`` (the issuer's).
    The validity is clipped to the issuer's ``notAfter``.
    """
    signer = issuer_key(hsm, issuer_label, issuer_cert, "key_cert_sign")
    if profile.ca and issuer_cert.extensions.get_extension_for_class(
            x509.BasicConstraints).value.path_length == 0:
        raise IssuerMismatch("the issuer's path length constraint forbids issuing CA certificates")
    return _build(subject=subject, public_key=load_public_key(public_key_der), profile=profile,
                  signer=signer, issuer_cert=issuer_cert, urls=urls, not_before=not_before,
                  validity_days=validity_days, serial=serial)


# -- revocation ----------------------------------------------------------------------------------


def make_crl(hsm: Hsm, issuer_label: str, issuer_cert: x509.Certificate,
             revoked: list[RevokedEntry], crl_number: int, this_update: dt.datetime,
             next_update: dt.datetime) -> x509.CertificateRevocationList:
    """A complete CRL (CRL number and AKI extensions) signed by the CA key ``issuer_label``."""
    this_update, next_update = utc(this_update, "this_update"), utc(next_update, "next_update")
    if next_update <= this_update:
        raise InvalidInput("next_update must be after this_update")
    if not 0 <= crl_number < _MAX_SERIAL:
        raise InvalidInput("crl_number must be non-negative and fit in 20 octets")
    signer = issuer_key(hsm, issuer_label, issuer_cert, "crl_sign")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_aki(issuer_cert), critical=False)
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(_revoked_certificate(entry))
    return builder.sign(signer, signature_hash(signer))


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    if entry.reason is x509.ReasonFlags.remove_from_crl:
        raise InvalidInput("removeFromCRL belongs in delta CRLs, which this CA does not issue")
    builder = (x509.RevokedCertificateBuilder()
               .serial_number(_check_serial(entry.serial))
               .revocation_date(utc(entry.revoked_at, "revoked_at")))
    # RFC 5280 5.3.1: leave the reasonCode out rather than say "unspecified".
    if entry.reason is not None and entry.reason is not x509.ReasonFlags.unspecified:
        builder = builder.add_extension(x509.CRLReason(entry.reason), critical=False)
    if entry.invalidity_date is not None:
        builder = builder.add_extension(
            x509.InvalidityDate(utc(entry.invalidity_date, "invalidity_date").replace(tzinfo=None)),
            critical=False)
    return builder.build()


@dataclass(frozen=True)
class CertId:
    """An OCSP CertID: hashes of the issuer's name and key, and the certificate serial."""

    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int
    hash_algorithm: hashes.HashAlgorithm

    @classmethod
    def for_serial(cls, issuer_cert: x509.Certificate, serial: int,
                   algorithm: hashes.HashAlgorithm | None = None) -> CertId:
        """The CertID of ``serial`` under ``issuer_cert`` (SHA-1 by default, as clients send)."""
        algorithm = algorithm or hashes.SHA1()  # noqa: S303 - CertID hashing, not a signature
        name_hash = hashes.Hash(algorithm)
        name_hash.update(issuer_cert.subject.public_bytes())
        key_hash = hashes.Hash(algorithm)
        # RFC 6960: the hash of the subjectPublicKey BIT STRING value (no tag, length, unused bits).
        key_hash.update(_subject_public_key_bits(cert_public_key(issuer_cert)))
        return cls(name_hash.finalize(), key_hash.finalize(), serial, algorithm)


@dataclass(frozen=True)
class OcspQuery:
    """What a (single-certificate) OCSP request asks: the CertID and the nonce, if any."""

    cert_id: CertId
    nonce: bytes | None


def parse_ocsp_request(request_der: bytes) -> OcspQuery:
    """Parse a DER OCSP request for one certificate; :class:`InvalidInput` if malformed."""
    try:
        req = ocsp.load_der_ocsp_request(request_der)
        cert_id = CertId(req.issuer_name_hash, req.issuer_key_hash, req.serial_number, req.hash_algorithm)
        try:
            nonce: bytes | None = req.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        except x509.ExtensionNotFound:
            nonce = None
    except (ValueError, TypeError, NotImplementedError, UnsupportedAlgorithm):
        # NotImplementedError: cryptography's answer to a request listing several certificates.
        raise InvalidInput("malformed or unsupported OCSP request") from None
    return OcspQuery(cert_id, nonce)


def _subject_public_key_bits(key: PublicKey) -> bytes:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return key.public_bytes(Encoding.DER, PublicFormat.PKCS1)


def _is_issuer_of(cert: x509.Certificate, cert_id: CertId) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    own = CertId.for_serial(cert, cert_id.serial, cert_id.hash_algorithm)
    return (own.issuer_name_hash, own.issuer_key_hash) == (cert_id.issuer_name_hash, cert_id.issuer_key_hash)


def make_ocsp_response(hsm: Hsm, responder_label: str, responder_cert: x509.Certificate,
                       cert_id: CertId, status: ocsp.OCSPCertStatus, *, this_update: dt.datetime,
                       next_update: dt.datetime, revoked_at: dt.datetime | None = None,
                       reason: x509.ReasonFlags | None = None, nonce: bytes | None = None) -> bytes:
    """A successful basic OCSP response (DER) for one CertID, signed by a delegated responder or
    by the CA itself.

    ``responder_cert`` either carries id-kp-OCSPSigning and is issued by the CA named in ``cert_id``
    (the caller's duty: the CertID holds only hashes), or is that CA's own certificate (RFC 6960
    4.2.2.2; checked against the CertID's hashes). A pre-signed response has no nonce.
    """
    this_update, next_update = utc(this_update, "this_update"), utc(next_update, "next_update")
    if next_update <= this_update:
        raise InvalidInput("next_update must be after this_update")
    if (status is ocsp.OCSPCertStatus.REVOKED) != (revoked_at is not None):
        raise InvalidInput("revoked_at is required for, and only for, status REVOKED")
    if not has_eku(responder_cert, ExtendedKeyUsageOID.OCSP_SIGNING) and not _is_issuer_of(responder_cert, cert_id):
        raise IssuerMismatch("the responder certificate lacks id-kp-OCSPSigning and is not the CA named "
                             "in the CertID")
    signer = signing_key(hsm, responder_label, responder_cert)
    if reason is x509.ReasonFlags.unspecified:
        reason = None
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=cert_id.issuer_name_hash, issuer_key_hash=cert_id.issuer_key_hash,
            serial_number=cert_id.serial, algorithm=cert_id.hash_algorithm, cert_status=status,
            this_update=this_update, next_update=next_update,
            revocation_time=None if revoked_at is None else utc(revoked_at, "revoked_at"),
            revocation_reason=reason if status is ocsp.OCSPCertStatus.REVOKED else None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder_cert)
        .certificates([responder_cert])
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.sign(signer, signature_hash(signer)).public_bytes(Encoding.DER)


def ocsp_error_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned OCSP error response (malformedRequest, unauthorized, tryLater ...)."""
    if status is ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise PkiError("a successful response must be signed: use make_ocsp_response")
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


__all__ = [
    "CaUrls", "CertId", "OcspQuery", "RevokedEntry", "create_issuing", "create_root", "issue",
    "make_crl", "make_ocsp_response", "ocsp_error_response", "parse_ocsp_request",
]
