"""What signing needs from the database: a credential's certificate chain and images, the trust
roots, the built-in TSA and the CRLs of the built-in CA."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import pem, x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from signer.blobs import BlobStore
from signer.models import Credential, CredentialStatus
from signer.signing.errors import CredentialUnusable
from signer.signing.models import CredentialImage, Crl, PkiAuthority


def load_pem_chain(text: str | None) -> list[x509.Certificate]:
    if not text:
        return []
    return [x509.Certificate.load(der) for _, _, der in pem.unarmor(text.encode(), multiple=True)]


@dataclass
class CredentialMaterial:
    credential_id: str
    key_label: str
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    images: dict[str, bytes] = field(default_factory=dict)  # "signature" / "seal" -> PNG
    image_widths: dict[str, int | None] = field(default_factory=dict)  # real size in mm, if known

    @property
    def is_ec(self) -> bool:
        return bool(self.certificate.public_key.algorithm == "ec")

    @property
    def holder_name(self) -> str:
        return str(self.certificate.subject.native.get("common_name", ""))


#: How a refusal names each unusable state, Vietnamese first.
_STATES = {
    "revoked": ("Chứng thư số đã bị thu hồi", "The credential's certificate is revoked"),
    "suspended": ("Chứng thư số đang bị tạm dừng", "The credential is suspended"),
    "expired": ("Chứng thư số đã hết hạn", "The credential's certificate has expired"),
    "pending": ("Chứng thư số chưa được cấp", "The credential has no certificate yet"),
    "not_yet_valid": ("Chứng thư số chưa có hiệu lực", "The credential's certificate is not valid yet"),
}


def _refusal(state: str) -> CredentialUnusable:
    vi, en = _STATES.get(state, (f"Chứng thư số đang ở trạng thái {state}", f"The credential is {state}"))
    return CredentialUnusable(f"{vi}, không thể ký số. / {en}: it cannot sign.",
                              credential_status=state)


def unusable(credential: Credential, now: datetime | None = None) -> CredentialUnusable | None:
    """Why ``credential`` cannot sign now (the error to raise), or None when it can.

    A certificate past its notAfter counts as expired even before the scheduler has marked the
    credential so: signing must not wait for the next expiry run.
    """
    if credential.status != CredentialStatus.ACTIVE.value:
        return _refusal(credential.status)
    if credential.certificate_der is None:
        return _refusal(CredentialStatus.PENDING.value)
    cert = x509.Certificate.load(credential.certificate_der)
    now = now or datetime.now(UTC)
    if now > cert.not_valid_after:
        return _refusal(CredentialStatus.EXPIRED.value)
    if now < cert.not_valid_before:
        return _refusal("not_yet_valid")
    return None


def credential_material(session: Session, blobs: BlobStore, credential: Credential,
                        with_images: bool = True) -> CredentialMaterial:
    """The signing material of an active credential, or :class:`CredentialUnusable`."""
    problem = unusable(credential)
    if problem is not None:
        raise problem
    assert credential.certificate_der is not None  # unusable() checked it
    cert = x509.Certificate.load(credential.certificate_der)
    images: dict[str, bytes] = {}
    widths: dict[str, int | None] = {}
    if with_images:
        for image in session.scalars(select(CredentialImage).where(
                CredentialImage.credential_id == credential.id)):
            images[image.kind] = blobs.get(image.blob)
            widths[image.kind] = image.width_mm
    return CredentialMaterial(credential.id, credential.hsm_key_label, cert,
                              load_pem_chain(credential.chain_pem), images, widths)


def trust_roots(session: Session, extra_file: Path | None = None) -> list[x509.Certificate]:
    """Roots of the built-in PKI plus the configured ones (e.g. the Government CA's, an external
    TSA's), from a PEM bundle named by ``SIGNER_TRUST_ROOTS_FILE``."""
    rows = session.scalars(select(PkiAuthority).where(PkiAuthority.kind == "root"))
    roots = [x509.Certificate.load(r.certificate_der) for r in rows]
    if extra_file is not None:
        roots += _pem_file(str(extra_file))
    return roots


@functools.lru_cache(maxsize=4)
def _pem_file(path: str) -> list[x509.Certificate]:
    return load_pem_chain(Path(path).read_text(encoding="ascii"))


def authority(session: Session, kind: str) -> PkiAuthority | None:
    return session.scalar(select(PkiAuthority).where(PkiAuthority.kind == kind)
                          .order_by(PkiAuthority.created_at.desc()).limit(1))


def authority_chain(session: Session, auth: PkiAuthority) -> list[x509.Certificate]:
    """The issuers above ``auth`` up to its root."""
    chain: list[x509.Certificate] = []
    current = auth
    while current.issuer_id is not None:
        parent = session.get(PkiAuthority, current.issuer_id)
        if parent is None:
            break
        chain.append(x509.Certificate.load(parent.certificate_der))
        current = parent
    return chain


def latest_crls(session: Session) -> list[bytes]:
    """The newest CRL of every built-in CA, for offline validation contexts (B-LT)."""
    out: list[bytes] = []
    for auth in session.scalars(select(PkiAuthority).where(PkiAuthority.kind.in_(("root", "issuing")))):
        crl = session.scalar(select(Crl).where(Crl.authority_id == auth.id)
                             .order_by(Crl.number.desc()).limit(1))
        if crl is not None:
            out.append(crl.der)
    return out
