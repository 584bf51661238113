"""PAdES with pyHanko's interrupted signing (DESIGN.md section 4).

prepare (no key): allocate the signature placeholder with a fixed ``bytes_reserved`` (no dry-run
size estimate), compute the byte-range digest, and build the DER signed attributes; DTBS/R is
SHA-256 over them. The prepared bytes are kept: they cannot be regenerated.

finish (hsm worker, after approval): check the prepared bytes still hash to what was approved,
sign DTBS/R, build the CMS (with a timestamp from B-T), fill the placeholder, then add the DSS
(B-LT) and a document timestamp (B-LTA) as further incremental updates.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asn1crypto import cms, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.validation import async_add_validation_info
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.signing.errors import DocumentAltered, InvalidDocument

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
_TIMESTAMP_ALLOWANCE = 6000  # a timestamp token with its TSA chain, DER bytes


@dataclass(frozen=True)
class PreparedPdf:
    prepared: bytes
    document_digest: bytes
    reserved_start: int
    reserved_end: int
    signed_attrs: bytes
    dtbsr: bytes
    md_algorithm: str
    page_count: int


def bytes_reserved(chain: list[x509.Certificate], level: str, signature_size: int = 512) -> int:
    """Hex-encoded space for the CMS: certificates, signature, attributes, and a timestamp token
    from B-T on. Sized generously once so pyHanko never runs a dry-run signature to estimate."""
    der = sum(len(c.dump()) for c in chain) + signature_size + 2500
    if level != "B-B":
        der += _TIMESTAMP_ALLOWANCE
    return 2 * (((der + 1023) // 1024) * 1024)


def open_pdf(data: bytes) -> PdfFileReader:
    """A reader over an unencrypted, parseable PDF, or :class:`InvalidDocument`."""
    if not data.lstrip()[:5] == b"%PDF-":
        raise InvalidDocument("not a PDF (no %PDF- header)")
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted:
            raise InvalidDocument("the PDF is encrypted; send it without a password or permissions lock")
        _ = reader.root["/Pages"]
        reader.root["/Pages"].get_object()
        return reader
    except InvalidDocument:
        raise
    except Exception as exc:  # pyHanko raises many types on damaged files
        raise InvalidDocument(f"the PDF cannot be read: {type(exc).__name__}") from None


def _check_certification(reader: PdfFileReader) -> None:
    # A certification signature with DocMDP level 1 forbids any change, including new signatures.
    perms = reader.root.get("/Perms")
    if perms is None:
        return
    docmdp = perms.get_object().get("/DocMDP")
    if docmdp is None:
        return
    for ref in docmdp.get_object().get("/Reference", []):
        params = ref.get_object().get("/TransformParams")
        if params is not None and int(params.get_object().get("/P", 2)) == 1:
            raise InvalidDocument("the PDF is certified with 'no changes allowed'; it cannot be signed")


def _run(coro: Awaitable[Any]) -> Any:
    # pyHanko's own sync API calls asyncio.run(); so do we, never inside a running loop.
    return asyncio.run(coro)  # type: ignore[arg-type]


def prepare(pdf: bytes, *, signing_cert: x509.Certificate, chain: list[x509.Certificate],
            level: str, signing_time: datetime, field_name: str,
            new_field: fields.SigFieldSpec | None, stamp_style: Any | None,
            appearance_text_params: dict[str, Any] | None, reason: str | None,
            location: str | None, md_algorithm: str = "sha256") -> PreparedPdf:
    """Allocate the signature and compute DTBS/R; nothing here touches a key."""
    reader = open_pdf(pdf)
    _check_certification(reader)
    page_count = int(reader.root["/Pages"]["/Count"])
    registry = SimpleCertificateStore.from_certs([signing_cert, *chain])
    ext_signer = signers.ExternalSigner(signing_cert, registry, signature_value=bytes(256))
    meta = signers.PdfSignatureMetadata(
        field_name=field_name, md_algorithm=md_algorithm, reason=reason, location=location,
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    pdf_signer = signers.PdfSigner(meta, signer=ext_signer, stamp_style=stamp_style,
                                   new_field_spec=new_field)

    async def run() -> PreparedPdf:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        session = pdf_signer.init_signing_session(writer, existing_fields_only=new_field is None)
        session.system_time = signing_time  # the stamp's %(ts)s and /M both use it
        tbs = session.prepare_tbs_document(validation_info=None,
                                           bytes_reserved=bytes_reserved([signing_cert, *chain], level),
                                           appearance_text_params=appearance_text_params)
        prep, output = tbs.digest_tbs_document(output=io.BytesIO())
        attrs = await ext_signer.signed_attrs(
            prep.document_digest, md_algorithm,
            attr_settings=PdfCMSSignedAttributes(signing_time=signing_time), use_pades=True,
        )
        der = attrs.dump()
        output.seek(0)
        return PreparedPdf(output.read(), prep.document_digest, prep.reserved_region_start,
                           prep.reserved_region_end, der, hashlib.sha256(der).digest(),
                           md_algorithm, page_count)

    try:
        result: PreparedPdf = _run(run())
    except InvalidDocument:
        raise
    except Exception as exc:
        raise InvalidDocument(f"the PDF cannot be prepared for signing: {exc}") from None
    return result


def check_prepared(prepared: bytes, *, reserved_start: int, reserved_end: int, md_algorithm: str,
                   document_digest: bytes, signed_attrs: bytes) -> None:
    """The stored bytes still hash to the digest in the approved signed attributes."""
    h = hashlib.new(md_algorithm)
    h.update(prepared[:reserved_start])
    h.update(prepared[reserved_end:])
    actual = h.digest()
    attrs = cms.CMSAttributes.load(signed_attrs)
    in_attrs = next(a["values"][0].native for a in attrs if a["type"].native == "message_digest")
    if actual != document_digest or actual != in_attrs:
        raise DocumentAltered("the prepared document changed after it was approved")


SignDigest = Callable[[bytes], bytes]  # DTBS/R -> raw signature (the HSM, after approval checks)


class _ApprovedSigner(signers.ExternalSigner):  # type: ignore[misc]
    """Signs only the one digest that was approved: anything else is a programming error."""

    def __init__(self, cert: x509.Certificate, registry: SimpleCertificateStore, dtbsr: bytes,
                 sign_digest: SignDigest) -> None:
        super().__init__(cert, registry, signature_value=bytes(256))
        self._dtbsr, self._sign_digest = dtbsr, sign_digest

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if hashlib.sha256(data).digest() != self._dtbsr:
            raise DocumentAltered("signed attributes differ from the approved DTBS/R")
        return self._sign_digest(self._dtbsr)


async def build_cms(*, signed_attrs: bytes, dtbsr: bytes, md_algorithm: str, signing_cert: x509.Certificate,
                    chain: list[x509.Certificate], sign_digest: SignDigest,
                    timestamper: TimeStamper | None) -> cms.ContentInfo:
    """The CMS SignedData over prescribed signed attributes, signed through ``sign_digest``."""
    registry = SimpleCertificateStore.from_certs([signing_cert, *chain])
    signer = _ApprovedSigner(signing_cert, registry, dtbsr, sign_digest)
    return await signer.async_sign_prescribed_attributes(
        md_algorithm, signed_attrs=cms.CMSAttributes.load(signed_attrs), timestamper=timestamper,
    )


def finish(*, prepared: bytes, reserved_start: int, reserved_end: int, document_digest: bytes,
           md_algorithm: str, signed_attrs: bytes, dtbsr: bytes, signing_cert: x509.Certificate,
           chain: list[x509.Certificate], sign_digest: SignDigest, level: str,
           timestamper: TimeStamper | None, validation_context: ValidationContext | None) -> bytes:
    """Complete the signature and raise it to ``level``; returns the signed PDF."""
    check_prepared(prepared, reserved_start=reserved_start, reserved_end=reserved_end,
                   md_algorithm=md_algorithm, document_digest=document_digest, signed_attrs=signed_attrs)
    if hashlib.sha256(signed_attrs).digest() != dtbsr:
        raise DocumentAltered("signed attributes differ from the approved DTBS/R")

    async def run() -> bytes:
        signature_cms = await build_cms(
            signed_attrs=signed_attrs, dtbsr=dtbsr, md_algorithm=md_algorithm,
            signing_cert=signing_cert, chain=chain, sign_digest=sign_digest,
            timestamper=timestamper if level != "B-B" else None)
        output = io.BytesIO(prepared)
        digest = PreparedByteRangeDigest(document_digest, reserved_start, reserved_end)
        await PdfTBSDocument.async_finish_signing(output, digest, signature_cms)
        if level in ("B-LT", "B-LTA"):
            assert validation_context is not None
            reader = PdfFileReader(output, strict=False)
            output = await async_add_validation_info(reader.embedded_signatures[-1], validation_context,
                                                     output=io.BytesIO())
        if level == "B-LTA":
            assert timestamper is not None
            writer = IncrementalPdfFileWriter(output, strict=False)
            output = await signers.PdfTimeStamper(timestamper).async_timestamp_pdf(
                writer, md_algorithm, validation_context=validation_context, output=io.BytesIO())
        output.seek(0)
        return output.read()

    result: bytes = _run(run())
    return result
