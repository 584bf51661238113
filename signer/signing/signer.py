"""Signs the documents of one approved request in the hsm worker (PAdES, CMS, raw hash)."""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select

import hsm
from signer.services import Services
from signer.signing import pades
from signer.signing.material import (
    CredentialMaterial,
    authority,
    authority_chain,
    credential_material,
    latest_crls,
    trust_roots,
)
from signer.signing.models import DocKind, DocState, SignDocument, SignRequest


def _algorithm(material: CredentialMaterial, hash_name: str) -> hsm.SignatureAlgorithm:
    scheme = hsm.Scheme.ECDSA if material.is_ec else hsm.Scheme.RSA_PKCS1V15
    return hsm.SignatureAlgorithm(scheme, hash_name)


@dataclass
class DocumentSigner:
    services: Services
    request_id: str
    material: CredentialMaterial
    timestamper: TimeStamper | None
    validation_context: ValidationContext

    @classmethod
    def load(cls, services: Services, request_id: str) -> DocumentSigner:
        with services.db.session() as s:
            request = s.get(SignRequest, request_id)
            assert request is not None
            material = credential_material(s, services.blobs, request.credential, with_images=False)
            roots = trust_roots(s, services.settings.trust_roots_file)
            crls = latest_crls(s)
            timestamper, tsa_certs = None, []
            tsa = authority(s, "tsa")
            if services.settings.tsa_url:
                # An external RFC 3161 TSA (e.g. the Government CA's); its root must be configured.
                timestamper = HTTPTimeStamper(services.settings.tsa_url, timeout=services.settings.tsa_timeout_s)
            elif tsa is not None:
                from signer.pki.profiles import tsa_policy_oid
                from signer.pki.tsa import HsmTimeStamper, TimeStampAuthority

                chain = [x509.load_der_x509_certificate(c.dump()) for c in authority_chain(s, tsa)]
                tsa_cert = x509.load_der_x509_certificate(tsa.certificate_der)
                timestamper = HsmTimeStamper(TimeStampAuthority(services.hsm(), tsa.key_label, tsa_cert,
                                                                chain, tsa_policy_oid()))
                tsa_certs = [asn1_x509.Certificate.load(tsa.certificate_der)]
        context = ValidationContext(trust_roots=roots, other_certs=[*material.chain, *tsa_certs],
                                    crls=crls, allow_fetching=False, revocation_mode="soft-fail")
        return cls(services, request_id, material, timestamper, context)

    def pending_documents(self) -> list[tuple[str, str]]:
        """``(id, kind)`` of the documents still to sign, in batch order."""
        with self.services.db.session() as s:
            rows = s.execute(select(SignDocument.id, SignDocument.kind)
                             .where(SignDocument.request_id == self.request_id,
                                    SignDocument.state.in_((DocState.READY.value, DocState.SIGNING.value)))
                             .order_by(SignDocument.position)).all()
        return [(doc_id, kind) for doc_id, kind in rows]

    def sign_hash(self, md_algorithm: str, digest: bytes) -> bytes:
        """A raw signature over a document system's digest (sign-hash)."""
        return self._sign_digest(md_algorithm)(digest)

    def _sign_digest(self, hash_name: str) -> pades.SignDigest:
        algorithm = _algorithm(self.material, hash_name)
        token = self.services.hsm()
        return lambda digest: token.sign_digest(self.material.key_label, digest, algorithm)

    def sign(self, doc_id: str) -> bytes:
        """The signed output of one document: a PDF, a DER CMS, or a raw signature."""
        with self.services.db.session() as s:
            doc = s.get(SignDocument, doc_id)
            assert doc is not None
            s.expunge(doc)
        dtbsr = bytes.fromhex(doc.dtbsr)
        if doc.kind == DocKind.HASH.value:
            return self._sign_digest(doc.md_algorithm)(dtbsr)
        assert doc.signed_attrs is not None
        if doc.kind == DocKind.CMS.value:
            import asyncio

            content_info = asyncio.run(pades.build_cms(
                signed_attrs=doc.signed_attrs, dtbsr=dtbsr, md_algorithm=doc.md_algorithm,
                signing_cert=self.material.certificate, chain=self.material.chain,
                sign_digest=self._sign_digest("sha256"),
                timestamper=self.timestamper if doc.level == "B-T" else None))
            return bytes(content_info.dump())
        assert doc.prepared_blob is not None
        assert doc.document_digest is not None
        assert doc.reserved_start is not None
        assert doc.reserved_end is not None
        if doc.level != "B-B" and self.timestamper is None:
            raise RuntimeError("no timestamp authority is configured for B-T and above")
        return pades.finish(
            prepared=self.services.blobs.get(doc.prepared_blob), reserved_start=doc.reserved_start,
            reserved_end=doc.reserved_end, document_digest=bytes.fromhex(doc.document_digest),
            md_algorithm=doc.md_algorithm, signed_attrs=doc.signed_attrs, dtbsr=dtbsr,
            signing_cert=self.material.certificate, chain=self.material.chain,
            sign_digest=self._sign_digest("sha256"), level=doc.level, timestamper=self.timestamper,
            validation_context=self.validation_context)
