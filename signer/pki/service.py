"""The built-in PKI as the service runs it: authorities kept in the database, keys in the HSM.

``init_builtin`` creates a root, an issuing CA, a TSA and the OCSP responder once;
``certify_credential`` issues a signing certificate for a credential's HSM key (and its first OCSP
response); ``publish_crls`` signs fresh CRLs and re-signs the OCSP responses whose status changed.
The full certificate lifecycle (requests, approvals, revocation) builds on these.
"""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import hsm
from signer import audit
from signer.models import Credential, CredentialKind, CredentialStatus, Organisation, User, aware
from signer.pki import builtin_ca, ocsp, revocation
from signer.pki.profiles import SIGNING, TSA, Profile
from signer.principal import Principal
from signer.signing.material import authority
from signer.signing.models import Crl, IssuedCertificate, PkiAuthority

CRL_VALIDITY = dt.timedelta(days=7)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation[:64]),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
    ])


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _load(row: PkiAuthority) -> x509.Certificate:
    return x509.load_der_x509_certificate(row.certificate_der)


def init_builtin(session: Session, token: hsm.Hsm, actor: Principal, *, base_url: str,
                 organisation: str, spec: str = "ec-p256") -> PkiAuthority:
    """Root, issuing CA, TSA and OCSP responder, once; returns the issuing CA (existing or new).

    The CA's own certificates enter the registry and get their first OCSP responses.
    """
    existing = authority(session, "issuing")
    if existing is not None:
        return existing
    key_spec = hsm.KeySpec.parse(spec)
    tag = secrets.token_hex(4)
    root_label, issuing_label, tsa_label = f"pki-root-{tag}", f"pki-issuing-{tag}", f"pki-tsa-{tag}"
    root_cert = builtin_ca.create_root(token, root_label, _name(f"{organisation} Root CA", organisation),
                                       key_spec)
    root = PkiAuthority(slug="root", kind="root", key_label=root_label, certificate_der=_der(root_cert))
    session.add(root)
    session.flush()
    issuing_cert = builtin_ca.create_issuing(token, issuing_label, _name(f"{organisation} CA", organisation),
                                             key_spec, root_label, root_cert,
                                             builtin_ca.CaUrls(base_url, "root"))
    issuing = PkiAuthority(slug="issuing", kind="issuing", key_label=issuing_label,
                           certificate_der=_der(issuing_cert), issuer_id=root.id)
    session.add(issuing)
    session.flush()
    tsa_key = token.generate_key(tsa_label, key_spec)
    tsa_cert = builtin_ca.issue(token, issuing_label, issuing_cert, tsa_key.public_key_der,
                                _name(f"{organisation} TSA", organisation), TSA,
                                builtin_ca.CaUrls(base_url, "issuing"))
    session.add(PkiAuthority(slug="tsa", kind="tsa", key_label=tsa_label, certificate_der=_der(tsa_cert),
                             issuer_id=issuing.id))
    session.flush()
    ocsp.ensure_responder(session, token, issuing, base_url=base_url)
    publish_crls(session, token)
    ocsp.refresh(session, token)
    audit.record(session, actor=actor.ref, action="pki.init", target="pki:builtin",
                 detail={"spec": spec, "root_sha256": root_cert.fingerprint(hashes.SHA256()).hex()})
    return issuing


def publish_crls(session: Session, token: hsm.Hsm, now: dt.datetime | None = None) -> list[Crl]:
    """A fresh CRL for every built-in CA, listing the revoked certificates it issued; the OCSP
    responses whose status changed are re-signed in the same transaction, so OCSP and CRL agree
    from the same commit."""
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for ca in session.scalars(select(PkiAuthority).where(PkiAuthority.kind.in_(("root", "issuing")))):
        cert = _load(ca)
        # SQLite hands back naive UTC datetimes; the CRL builder refuses naive ones.
        revoked = [builtin_ca.RevokedEntry(int(row.serial, 16), aware(row.revoked_at or now),
                                           revocation.reason_flag(row.revocation_reason),
                                           aware(row.invalidity_date) if row.invalidity_date else None)
                   for row in session.scalars(select(IssuedCertificate).where(
                       IssuedCertificate.authority_id == ca.id, IssuedCertificate.status == "revoked"))]
        number = (session.scalar(select(func.max(Crl.number)).where(Crl.authority_id == ca.id)) or 0) + 1
        crl = builtin_ca.make_crl(token, ca.key_label, cert, revoked, number, now, now + CRL_VALIDITY)
        row = Crl(authority_id=ca.id, number=number, der=crl.public_bytes(Encoding.DER),
                  this_update=now, next_update=now + CRL_VALIDITY)
        session.add(row)
        out.append(row)
    session.flush()
    ocsp.refresh(session, token, now, ocsp.changed_certificates(session))
    return out


def _default_subject(session: Session, credential: Credential) -> x509.Name:
    org = session.get(Organisation, credential.organisation_id)
    assert org is not None
    holder = org.name
    if credential.kind == CredentialKind.PERSONAL.value and credential.owner_user_id:
        owner = session.get(User, credential.owner_user_id)
        holder = owner.full_name if owner else holder
    return _name(holder, org.name)


def certify_credential(session: Session, token: hsm.Hsm, actor: Principal, credential: Credential, *,
                       base_url: str, subject: x509.Name | None = None, profile: Profile = SIGNING
                       ) -> x509.Certificate:
    """Issue the credential's signing certificate from the built-in issuing CA and activate it.

    ``subject`` and ``profile`` come from the lifecycle request's subject and certificate profiles;
    without them (``signer ca certify``) the holder's name and the default signing profile apply.
    """
    issuing = authority(session, "issuing")
    if issuing is None:
        raise ValueError("the built-in CA is not initialised (signer ca init)")
    issuing_cert = _load(issuing)
    cert = builtin_ca.issue(token, issuing.key_label, issuing_cert, credential.public_key_der,
                            subject or _default_subject(session, credential), profile,
                            builtin_ca.CaUrls(base_url, "issuing"))
    root = session.get(PkiAuthority, issuing.issuer_id) if issuing.issuer_id else None
    chain = [issuing_cert] + ([_load(root)] if root else [])
    credential.certificate_der = _der(cert)
    credential.chain_pem = "".join(c.public_bytes(Encoding.PEM).decode() for c in chain)
    credential.status = CredentialStatus.ACTIVE.value
    registered = revocation.record_issued(session, cert, credential_id=credential.id, authority=issuing)
    ocsp.refresh(session, token, None, [registered])  # answered "good" from the first moment
    token.store_certificate(credential.hsm_key_label, _der(cert))
    audit.record(session, actor=actor.ref, action="credential.certify", target=f"credential:{credential.id}",
                 organisation_id=credential.organisation_id,
                 detail={"serial": format(cert.serial_number, "x"), "issuer": "builtin"})
    return cert
