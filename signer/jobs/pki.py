"""PKI jobs for the hsm worker: RFC 3161 timestamps for the HTTP TSA endpoint, CRL publication."""

from __future__ import annotations

from cryptography import x509

from signer.jobs import services
from signer.pki.profiles import tsa_policy_oid
from signer.pki.service import publish_crls
from signer.pki.tsa import TimeStampAuthority
from signer.signing.material import authority, authority_chain


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
