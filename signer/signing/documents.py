"""Preparing one document of a sign request, per format: PAdES, detached CMS (CAdES), raw hash.

Each preparer returns a :class:`Prepared`: what the HSM will sign (DTBS/R) and what finishing
needs later. Nothing here touches a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.signing import pades, visible
from signer.signing.errors import InvalidDocument
from signer.signing.material import CredentialMaterial
from signer.signing.schemas import DocumentIn


@dataclass(frozen=True)
class Prepared:
    kind: str  # DocKind value
    dtbsr: bytes
    md_algorithm: str
    content_sha256: str
    size: int
    prepared: bytes | None = None  # PDF bytes with the placeholder
    document_digest: bytes | None = None
    reserved_start: int | None = None
    reserved_end: int | None = None
    signed_attrs: bytes | None = None
    page_count: int | None = None


def prepare(doc: DocumentIn, content: bytes | None, material: CredentialMaterial, *,
            signing_time: datetime, organisation_name: str, position: int,
            trust_roots: list[x509.Certificate]) -> Prepared:
    """Dispatch on the document's format."""
    if doc.format == "raw":
        assert doc.hash is not None
        digest = bytes.fromhex(doc.hash)
        return Prepared("hash", digest, doc.hash_algorithm, doc.hash.lower(), 0)
    assert content is not None
    if doc.format == "cades":
        return prepare_cms(content, material, signing_time=signing_time, md_algorithm=doc.hash_algorithm)
    return prepare_pdf(doc, content, material, signing_time=signing_time,
                       organisation_name=organisation_name, position=position, trust_roots=trust_roots)


def prepare_cms(content: bytes, material: CredentialMaterial, *, signing_time: datetime,
                md_algorithm: str) -> Prepared:
    """CAdES-B-B signed attributes over the file's digest (content-type, message-digest,
    signing-time, signing-certificate-v2)."""
    digest = hashlib.new(md_algorithm, content).digest()
    registry = SimpleCertificateStore.from_certs([material.certificate, *material.chain])
    ext = signers.ExternalSigner(material.certificate, registry, signature_value=bytes(256))
    attrs = asyncio.run(ext.signed_attrs(digest, md_algorithm,
                                         attr_settings=PdfCMSSignedAttributes(signing_time=signing_time),
                                         use_pades=True, is_pdf_sig=False))
    der = attrs.dump()
    return Prepared("cms", hashlib.sha256(der).digest(), md_algorithm,
                    hashlib.sha256(content).hexdigest(), len(content), document_digest=digest,
                    signed_attrs=der)


def prepare_pdf(doc: DocumentIn, content: bytes, material: CredentialMaterial, *,
                signing_time: datetime, organisation_name: str, position: int,
                trust_roots: list[x509.Certificate]) -> Prepared:
    assert doc.profile is not None
    reader = pades.open_pdf(content)
    approved_field: str | None = None
    if doc.profile == "issued":
        approved_field = require_valid_signature(content, trust_roots)
    look = visible.appearance_for(doc, content, material, organisation_name=organisation_name,
                                  approved_field=approved_field, reader=reader)
    prep = pades.prepare(
        content, signing_cert=material.certificate, chain=material.chain, level=doc.level,
        signing_time=signing_time, field_name=look.field_name, new_field=look.new_field,
        stamp_style=look.stamp_style, appearance_text_params=look.text_params,
        reason=doc.reason, location=doc.location, md_algorithm="sha256",
    )
    return Prepared("pdf", prep.dtbsr, prep.md_algorithm, hashlib.sha256(content).hexdigest(),
                    len(content), prepared=prep.prepared, document_digest=prep.document_digest,
                    reserved_start=prep.reserved_start, reserved_end=prep.reserved_end,
                    signed_attrs=prep.signed_attrs, page_count=prep.page_count)


def require_valid_signature(content: bytes, trust_roots: list[x509.Certificate]) -> str:
    """The field name of a valid, trusted, intact signature (the leader's, for ``issued``)."""
    reader = PdfFileReader(io.BytesIO(content), strict=False)
    context = ValidationContext(trust_roots=trust_roots, allow_fetching=False)

    async def first_valid() -> str | None:
        for sig in reader.embedded_signatures:
            status = await async_validate_pdf_signature(sig, context)
            if status.bottom_line:
                return str(sig.field_name)
        return None

    field = asyncio.run(first_valid())
    if field is None:
        raise InvalidDocument("profile issued needs a document that already carries a valid "
                              "approved signature (the competent person's)")
    return field
