"""PKI jobs for the hsm worker: RFC 3161 timestamps for the HTTP TSA endpoint, CRL publication,
OCSP responses (pre-signed by a scheduled refresh, or on demand for the OCSP endpoint)."""

from __future__ import annotations

from cryptography import x509
from sqlalchemy import select

from signer.jobs import services
from signer.pki import ocsp
from signer.pki.profiles import tsa_policy_oid
from signer.pki.service import publish_crls
from signer.pki.tsa import TimeStampAuthority
from signer.signing.material import authority, authority_chain
from signer.signing.models import IssuedCertificate

#: Certificates re-signed per transaction by the scheduled refresh: a revocation waiting for a
#: locked certificate row waits for one batch at most, not for the whole table.
OCSP_BATCH = 200


def timestamp(request_der: bytes) -> bytes:
    """Answer one TimeStampReq with the built-in TSA (a synchronous RPC: the request is the
    only input, so it travels in the job rather than through the database)."""
    svc = services()
    with svc.db.session() as s:
        tsa = authority(s, "tsa")
        if tsa is None:
            raise RuntimeError("the built-in TSA is not initialised")
        chain = [x509.load_der_x509_certificate(c.dump()) for c in authority_chain(s, tsa)]
        cert = x509.load_der_x509_certificate(tsa.certificate_der)
        label = tsa.key_label
    return TimeStampAuthority(svc.hsm(), label, cert, chain, tsa_policy_oid()).respond(request_der)


def refresh_crls() -> int:
    """Sign and store a fresh CRL for every built-in CA."""
    svc = services()
    with svc.db.session() as s:
        return len(publish_crls(s, svc.hsm()))


def ocsp_respond(request_der: bytes) -> bytes:
    """Answer one OCSP request the web tier could not answer from the pre-signed table (a
    synchronous RPC, like :func:`timestamp`): unknown serials, non-SHA-1 CertIDs, stale responses."""
    svc = services()
    with svc.db.session() as s:
        return ocsp.respond(s, svc.hsm(), request_der)


def refresh_ocsp() -> int:
    """Renew the responder certificate if due, then re-sign every due OCSP response in batches;
    returns how many responses were signed."""
    svc = services()
    token = svc.hsm()
    with svc.db.session() as s:
        if authority(s, "issuing") is None:
            return 0
        ocsp.ensure_responder(s, token)
        ocsp.register_authorities(s)
        signed = ocsp.refresh(s, token, certificates=ocsp.changed_certificates(s))
    while True:
        with svc.db.session() as s:
            ids = ocsp.due_ids(s, limit=OCSP_BATCH)
            if not ids:
                return signed
            rows = list(s.scalars(select(IssuedCertificate).where(IssuedCertificate.id.in_(ids))))
            done = ocsp.refresh(s, token, certificates=rows)
            signed += done
        if done == 0:
            return signed  # due by the cheap test but nothing to sign (e.g. not ours): stop, do not spin
