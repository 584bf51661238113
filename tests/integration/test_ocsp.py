"""The OCSP responder of the built-in CA over real HTTP: `openssl ocsp` sees good, then revoked
within a second of the revocation's commit, and unknown for a serial the CA signed but never
recorded; pyhanko-certvalidator, fetching from the certificates' AIA and CRL URLs with revocation
checking required, accepts a certificate, refuses it once revoked, and still accepts a B-LT PDF
signed before the revocation from the data embedded in it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import re
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from sqlalchemy import select, update

import hsm
from signer.models import Credential, aware
from signer.pki import builtin_ca, ocsp
from signer.pki.profiles import SIGNING
from signer.pki.revocation import revoke_credential
from signer.principal import SYSTEM
from signer.queues import HSM, queue
from signer.services import Services
from signer.signing import sweeper
from signer.signing.material import authority, trust_roots
from signer.signing.models import IssuedCertificate, OcspResponse, PkiAuthority
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.images import signature_png
from tests.live import Served
from tests.pdfs import decision_pdf
from tests.signing_support import SigningWorld, approve, make_signing_world
from tests.support import SoftHsm, hsm_worker_processes

pytestmark = pytest.mark.live


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm, served: Served) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def _ca(services: Services, kind: str) -> tuple[PkiAuthority, x509.Certificate]:
    with services.db.session() as s:
        row = authority(s, kind)
        assert row is not None
        s.expunge(row)
    return row, x509.load_der_x509_certificate(row.certificate_der)


def _leader_cert(services: Services, sw: SigningWorld) -> x509.Certificate:
    with services.db.session() as s:
        cred = s.get(Credential, sw.leader_credential)
        assert cred is not None and cred.certificate_der is not None
        return x509.load_der_x509_certificate(cred.certificate_der)


def _pem(path: Path, *certs: x509.Certificate) -> str:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return str(path)


def _openssl_ocsp(served: Served, issuer: str, cert: str, root: str) -> str:
    out = subprocess.run(["openssl", "ocsp", "-issuer", issuer, "-cert", cert, "-url", served.ocsp_url,
                          "-CAfile", root, "-resp_text", "-timeout", "20"],
                         capture_output=True, text=True, check=False)
    return out.stdout + out.stderr


def _request(issuer: x509.Certificate, cert: x509.Certificate, algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    return builder.build().public_bytes(Encoding.DER)


def _http(url: str, body: bytes | None = None, content_type: str = "application/ocsp-request") -> Any:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": content_type} if body is not None else {})
    try:
        return urllib.request.urlopen(req, timeout=30)
    except urllib.error.HTTPError as e:
        return e


def test_openssl_good_revoked_unknown(services: Services, sw: SigningWorld, served: Served, token: hsm.Hsm,
                                      softhsm: SoftHsm, ec_key: hsm.KeyInfo, tmp_path: Path) -> None:
    (_, root), (issuing_row, issuing) = _ca(services, "root"), _ca(services, "issuing")
    leaf = _leader_cert(services, sw)
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert served.ocsp_url in [d.access_location.value for d in aia]  # we serve what certificates name
    root_pem, issuing_pem = _pem(tmp_path / "root.pem", root), _pem(tmp_path / "issuing.pem", issuing)
    leaf_pem = _pem(tmp_path / "leaf.pem", leaf)

    # good, from the response certify_credential pre-signed; signed by the delegated responder.
    out = _openssl_ocsp(served, issuing_pem, leaf_pem, root_pem)
    assert "Response verify OK" in out and f"{leaf_pem}: good" in out, out
    assert "OCSP Signing" in out and "OCSP No Check" in out, out  # the responder certificate it carried
    with services.db.session() as s:
        responder = s.scalar(select(PkiAuthority).where(PkiAuthority.kind == "ocsp"))
        assert responder is not None and responder.issuer_id == issuing_row.id
        # The CA's own certificates are in the registry with responses of their own.
        infra = s.scalars(select(IssuedCertificate).where(IssuedCertificate.credential_id.is_(None))).all()
        assert len(infra) == 3  # issuing CA, TSA, responder
        assert all(s.get(OcspResponse, c.id) is not None for c in infra)
    # The issuing CA's own status, answered by the root key itself.
    out = _openssl_ocsp(served, root_pem, issuing_pem, root_pem)
    assert "Response verify OK" in out and f"{issuing_pem}: good" in out, out

    # GET (RFC 6960 A.1.1) from the table: cacheable, no longer than the response's nextUpdate.
    encoded = urllib.parse.quote(base64.b64encode(_request(issuing, leaf)).decode(), safe="")
    with _http(f"{served.ocsp_url}/{encoded}") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/ocsp-response"
        max_age = int(re.search(r"max-age=(\d+)", resp.headers["Cache-Control"])[1])  # type: ignore[index]
        answer = x509_ocsp.load_der_ocsp_response(resp.read())
    assert answer.certificate_status is x509_ocsp.OCSPCertStatus.GOOD and answer.serial_number == leaf.serial_number
    assert answer.next_update_utc is not None
    assert 0 < max_age <= min(60, (answer.next_update_utc - dt.datetime.now(dt.UTC)).total_seconds())

    # revoked, from the moment revoke_credential commits (the response is re-signed in its transaction).
    with services.db.session() as s:
        revoke_credential(s, token, SYSTEM, sw.leader_credential, reason="keyCompromise")
    committed = time.monotonic()
    while True:
        out = _openssl_ocsp(served, issuing_pem, leaf_pem, root_pem)
        delay = time.monotonic() - committed
        if f"{leaf_pem}: revoked" in out or delay > 5:
            break
    print(f"revocation commit -> OCSP revoked (openssl, incl. process start): {delay * 1000:.0f} ms")
    assert f"{leaf_pem}: revoked" in out and "Response verify OK" in out, out
    assert "Reason: keyCompromise" in out, out
    assert delay < 1.0

    # unknown: a certificate the issuing CA signed but the registry never recorded. Signed on demand
    # by the hsm worker (the web tier has no key), with the request's nonce echoed.
    foreign = builtin_ca.issue(token, issuing_row.key_label, issuing, ec_key.public_key_der,
                               x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Không có trong sổ")]), SIGNING,
                               builtin_ca.CaUrls(served.url, "issuing"))
    foreign_pem = _pem(tmp_path / "foreign.pem", foreign)
    with hsm_worker_processes(services, softhsm, 1):
        out = _openssl_ocsp(served, issuing_pem, foreign_pem, root_pem)
        assert "Response verify OK" in out and f"{foreign_pem}: unknown" in out, out
        assert "WARNING: no nonce" not in out, out
        # A SHA-256 CertID cannot use the SHA-1 pre-signed response: signed on demand too.
        with _http(served.ocsp_url, _request(issuing, leaf, hashes.SHA256())) as resp:
            answer = x509_ocsp.load_der_ocsp_response(resp.read())
        assert answer.certificate_status is x509_ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    # Unknown issuer: unauthorized; garbage: malformedRequest (unsigned, no worker needed).
    with _http(served.ocsp_url, _request(leaf, foreign)) as resp:
        assert x509_ocsp.load_der_ocsp_response(resp.read()).response_status is \
            x509_ocsp.OCSPResponseStatus.UNAUTHORIZED
    with _http(served.ocsp_url, b"\x30\x03junk") as resp:
        assert x509_ocsp.load_der_ocsp_response(resp.read()).response_status is \
            x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # Base64 may hold "//": no slash merging (and no redirect) on the GET route.
    raw = base64.b64encode(_request(issuing, leaf)).decode()
    with _http(f"{served.ocsp_url}/{raw}//") as resp:
        assert resp.url == f"{served.ocsp_url}/{raw}//" and resp.status == 200
        assert x509_ocsp.load_der_ocsp_response(resp.read()).response_status is \
            x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    with _http(f"{served.ocsp_url}/not%20base64!") as resp:
        assert x509_ocsp.load_der_ocsp_response(resp.read()).response_status is \
            x509_ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # HTTP-level refusals stay problem+json.
    with _http(served.ocsp_url, b"x", content_type="text/plain") as wrong:
        assert wrong.status == 415 and wrong.headers["Content-Type"] == "application/problem+json"
    with _http(served.ocsp_url, b"\x30" * 20000) as big:
        assert big.status == 413 and big.headers["Content-Type"] == "application/problem+json"


def test_refresh_resigns_what_is_due(services: Services, sw: SigningWorld, token: hsm.Hsm) -> None:
    """The scheduled refresh: nothing to do on fresh responses; all re-signed past half their
    validity; a responder certificate near its end is re-issued; a hold and its release reach OCSP."""
    with services.db.session() as s:
        assert ocsp.refresh(s, token) == 0
        assert ocsp.due_ids(s) == [] and not ocsp.responder_due(s)
        total = len(s.scalars(select(OcspResponse)).all())
        later = dt.datetime.now(dt.UTC) + ocsp.RESPONSE_VALIDITY - ocsp.REFRESH_WHEN_LEFT + dt.timedelta(minutes=1)
        assert len(ocsp.due_ids(s, later)) == total
        assert ocsp.refresh(s, token, later) == total
        responder = s.scalar(select(PkiAuthority).where(PkiAuthority.kind == "ocsp"))
        assert responder is not None
        old_label = responder.key_label
        end = x509.load_der_x509_certificate(responder.certificate_der).not_valid_after_utc
    near_end = end - ocsp.RESPONDER_RENEW_BEFORE + dt.timedelta(days=1)
    with services.db.session() as s:
        assert ocsp.responder_due(s, near_end)
        renewed = ocsp.ensure_responder(s, token, now=near_end)
        assert renewed.key_label != old_label and renewed.slug == "ocsp-issuing"
    with services.db.session() as s:
        # the new responder certificate is registered, and gets its response from the next refresh
        assert ocsp.refresh(s, token) == 1

    # The scheduler's task: nothing while fresh; responses near their nextUpdate go to the hsm worker.
    assert sweeper.refresh_ocsp(services) is False
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    with services.db.session() as s:
        s.execute(update(OcspResponse).values(next_update=soon))
    assert sweeper.refresh_ocsp(services) is True
    assert "refresh-ocsp" in queue(services, HSM).get_job_ids()
    run_hsm_worker(services, burst=True)
    with services.db.session() as s:
        ends = [aware(r.next_update) for r in s.scalars(select(OcspResponse))]
    assert len(ends) == total + 1 and min(ends) > soon + ocsp.REFRESH_WHEN_LEFT

    # certificateHold then release, as the lifecycle does: publish_crls keeps OCSP in step.
    from signer.pki import revocation
    from signer.pki.service import publish_crls

    def status() -> tuple[x509_ocsp.OCSPCertStatus, x509.ReasonFlags | None]:
        with services.db.session() as s:
            cred = s.get(Credential, sw.seal_credential)
            assert cred is not None
            row = revocation.current_certificate(s, cred)
            assert row is not None
            resp = s.get(OcspResponse, row.id)
            assert resp is not None
            parsed = x509_ocsp.load_der_ocsp_response(resp.der)
            return parsed.certificate_status, parsed.revocation_reason

    with services.db.session() as s:
        cred = s.get(Credential, sw.seal_credential)
        assert cred is not None
        revocation.hold(s, cred, now=dt.datetime.now(dt.UTC))
        publish_crls(s, token)
    assert status() == (x509_ocsp.OCSPCertStatus.REVOKED, x509.ReasonFlags.certificate_hold)
    with services.db.session() as s:
        cred = s.get(Credential, sw.seal_credential)
        assert cred is not None
        revocation.release(s, cred)
        publish_crls(s, token)
    assert status() == (x509_ocsp.OCSPCertStatus.GOOD, None)


def _validate_online(cert: x509.Certificate, issuing: x509.Certificate, roots: list[asn1_x509.Certificate]) -> None:
    """Validate with revocation checking required, fetching from the URLs the certificates name."""

    async def run() -> None:
        backend = AIOHttpFetcherBackend(per_request_timeout=20)
        try:
            context = ValidationContext(trust_roots=roots, allow_fetching=True, revocation_mode="hard-fail",
                                        fetcher_backend=backend)
            validator = CertificateValidator(
                asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER)),
                intermediate_certs=[asn1_x509.Certificate.load(issuing.public_bytes(Encoding.DER))],
                validation_context=context)
            await validator.async_validate_usage({"digital_signature"})
        finally:
            await backend.close()

    asyncio.run(run())


@pytest.mark.one_db  # certificate and PDF validation
def test_certvalidator_online_and_blt_from_embedded_data(client: Any, services: Services, sw: SigningWorld,
                                                         served: Served, token: hsm.Hsm) -> None:
    world = sw.world
    _, issuing = _ca(services, "issuing")
    leaf = _leader_cert(services, sw)
    with services.db.session() as s:
        roots = trust_roots(s)

    # Before: valid, revocation fetched from the live service (OCSP for the leaf and the issuing CA).
    _validate_online(leaf, issuing, roots)
    assert served.ocsp_calls() >= 2, served.calls

    # A B-LT PDF signed before the revocation.
    client.post("/v1/session", json={"username": "office-admin", "password": world.password})
    assert client.put(f"/v1/credentials/{sw.leader_credential}/images/signature", data=signature_png(),
                      content_type="image/png").status_code == 200
    client.delete("/v1/session")
    headers = {"Authorization": f"Bearer {world.api_key}"}
    created = client.post("/v1/sign-requests", headers=headers, json={
        "credential_id": sw.leader_credential, "documents": [{
            "name": "B-LT", "format": "pades", "profile": "approved", "level": "B-LT",
            "placement": {"anchor": "Nguyễn Văn An"}, "content": base64.b64encode(decision_pdf()).decode()}]})
    assert created.status_code == 202, created.json
    assert approve(client, world, sw.leader, created.json).status_code == 202
    run_hsm_worker(services, burst=True)
    done = client.get(f"/v1/sign-requests/{created.json['id']}", headers=headers).json
    assert done["state"] == "COMPLETED", done
    pdf = client.get(done["documents"][0]["signed_url"], headers=headers).data

    with services.db.session() as s:
        revoke_credential(s, token, SYSTEM, sw.leader_credential, reason="keyCompromise")

    # After: the live service says revoked.
    with pytest.raises(RevokedError):
        _validate_online(leaf, issuing, roots)

    # The PDF still validates from what it carries: the DSS's revocation data from signing time,
    # offline, with revocation checking required (nothing else could supply it).
    reader = PdfFileReader(io.BytesIO(pdf))
    context = DocumentSecurityStore.read_dss(reader).as_validation_context(
        {"trust_roots": roots, "allow_fetching": False, "revocation_mode": "hard-fail"})
    status = validate_pdf_signature(reader.embedded_signatures[0], context)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.timestamp_validity is not None and status.timestamp_validity.valid
