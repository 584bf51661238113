"""The external CA back end: the CSR and form summary go out to the Government CA, the issued
certificate comes back (PEM bundle, DER, PKCS#7) and activates the credential only when it
certifies the HSM key and its chain verifies.

The Government CA is played here by a separate CA made with ``cryptography``, outside our system;
openssl checks the CSR and the stored chain independently.
"""

from __future__ import annotations

import datetime as dt
import secrets
import subprocess
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select

import hsm
from hsm.keys import private_key
from signer.lifecycle.models import CertificateDecision, CertificateRequest, CertificateRequestItem
from signer.models import AuditEvent, Credential, Role
from signer.pki import external
from signer.principal import Principal
from signer.services import Services
from signer.signing.models import IssuedCertificate
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.integration.test_api_auth import assert_problem, counts, last_audit, login

ORG_NAME = "Văn phòng UBND tỉnh"  # the world fixture's office
ORG_CODE = "000.00.01.H53"
PEM = "application/x-pem-file"


# -- the Government CA, outside our system -------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ban Cơ yếu Chính phủ"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: x509.Name, public_key: Any, issuer: x509.Name, issuer_key: Any, *, ca: bool,
          days: int = 365, start: dt.datetime | None = None) -> x509.Certificate:
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(start)
               .not_valid_after(start + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=not ca,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class GovernmentCa:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate

    @classmethod
    def create(cls) -> GovernmentCa:
        root_key, inter_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
        root = _cert(_name("Root CA thử nghiệm"), root_key.public_key(), _name("Root CA thử nghiệm"), root_key,
                     ca=True, days=3650)
        inter = _cert(_name("CA Chính phủ thử nghiệm"), inter_key.public_key(), root.subject, root_key, ca=True)
        return cls(root_key, root, inter_key, inter)

    def issue(self, csr: x509.CertificateSigningRequest, *, public_key: Any = None) -> x509.Certificate:
        """Certify the CSR's subject and key (or ``public_key``: a CA mistake, for the tests)."""
        assert csr.is_signature_valid
        return _cert(csr.subject, public_key or csr.public_key(), self.inter.subject, self.inter_key, ca=False)

    def bundle(self, leaf: x509.Certificate, *extra: x509.Certificate) -> bytes:
        return b"".join(c.public_bytes(Encoding.PEM) for c in (leaf, *(extra or (self.inter, self.root))))


def openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)


def pkcs7(pem_bundle: bytes, tmp_path: Path, outform: str) -> bytes:
    src = tmp_path / f"bundle-{secrets.token_hex(3)}.pem"
    src.write_bytes(pem_bundle)
    done = openssl("crl2pkcs7", "-nocrl", "-certfile", str(src), "-outform", outform)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- a request awaiting its certificate, as the hsm worker leaves it --------------------------------

@dataclass
class Awaiting:
    request_id: str
    item_id: str
    credential_id: str
    key_label: str
    csr: x509.CertificateSigningRequest

    @property
    def url(self) -> str:
        return f"/v1/admin/certificate-requests/{self.request_id}/items/0"


def make_awaiting(services: Services, world: World, token: hsm.Hsm, action: str = "issue") -> Awaiting:
    label = f"ext-{secrets.token_hex(6)}"
    key = token.generate_key(label, hsm.KeySpec.parse("ec-p256"))
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                         x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Tây Ninh"),
                         x509.NameAttribute(NameOID.COMMON_NAME, ORG_NAME),
                         x509.NameAttribute(NameOID.USER_ID, f"MCQ:{ORG_CODE}")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(private_key(token, label),
                                                                              hashes.SHA256())
    now = dt.datetime.now(dt.UTC)
    with services.db.session() as s:
        credential = Credential(name="Con dấu Văn phòng", kind="organisation", organisation_id=world.office,
                                hsm_key_label=label, hsm_key_id=key.key_id, key_spec="ec-p256",
                                public_key_der=key.public_key_der)
        s.add(credential)
        s.flush()
        request = CertificateRequest(
            action=action, status="awaiting_certificate", organisation_id=world.office, profile="organisation-seal",
            subject_profile="organisation", ca="external",
            params={"subject": {"province": "Tây Ninh"}, "key_spec": "ec-p256", "name": "Con dấu Văn phòng",
                    "kind": "organisation"},
            requested_by=f"user:{world.users['office-ra']}", requester_user_id=world.users["office-ra"],
            approvals_required=1, approver_roles=["admin"], expires_at=now + dt.timedelta(days=3), decided_at=now)
        request.items = [CertificateRequestItem(position=0, credential_id=credential.id, status="awaiting",
                                                csr_der=csr.public_bytes(Encoding.DER), key_label=label)]
        request.decisions = [CertificateDecision(user_id=world.users["office-admin"], decision="approve", at=now)]
        s.add(request)
        s.flush()
        return Awaiting(request.id, request.items[0].id, credential.id, label, csr)


@pytest.fixture
def gov() -> GovernmentCa:
    return GovernmentCa.create()


@pytest.fixture
def awaiting(services: Services, world: World, token: hsm.Hsm) -> Awaiting:
    return make_awaiting(services, world, token)


def _ra(world: World) -> Principal:
    return Principal(kind="user", id=world.users["office-ra"], organisation_id=world.office,
                     roles=frozenset({Role.RA_OFFICER}))


def _state(services: Services, a: Awaiting) -> tuple[str, str | None, str, str]:
    with services.db.session() as s:
        credential, item = s.get(Credential, a.credential_id), s.get(CertificateRequestItem, a.item_id)
        request = s.get(CertificateRequest, a.request_id)
        assert credential is not None and item is not None and request is not None
        return credential.status, item.certificate_id, item.status, request.status


# -- export ----------------------------------------------------------------------------------------

@pytest.mark.one_db  # CSR, summary and PDF rendering
def test_csr_and_summary_go_out_for_the_government_ca(client: Any, services: Services, world: World,
                                                      awaiting: Awaiting, tmp_path: Path) -> None:
    login(client, world, "office-ra")
    resp = client.get(f"{awaiting.url}/csr")
    assert resp.status_code == 200 and resp.mimetype == PEM
    assert "attachment" in resp.headers["Content-Disposition"]
    checked = openssl("req", "-verify", "-noout", stdin=resp.data)
    assert checked.returncode == 0 and b"verify OK" in checked.stdout + checked.stderr, checked
    csr = x509.load_pem_x509_csr(resp.data)
    with services.db.session() as s:
        credential = s.get(Credential, awaiting.credential_id)
        assert credential is not None
        assert csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == \
            credential.public_key_der
    der = client.get(f"{awaiting.url}/csr?format=der")
    assert der.mimetype == "application/pkcs10" and der.data == awaiting.csr.public_bytes(Encoding.DER)
    assert_problem(client.get(f"{awaiting.url}/csr?format=txt"), 422, "invalid-input")

    summary = client.get(f"{awaiting.url}/summary")
    assert summary.status_code == 200, summary.json
    body = summary.json
    assert body["organisation"] == {"id": world.office, "code": ORG_CODE, "name": ORG_NAME}
    assert ORG_NAME in summary.get_data(as_text=True)  # UTF-8, not \u escapes
    assert {f["attribute"]: f["value"] for f in body["subject"]} == {
        "C": "VN", "ST": "Tây Ninh", "CN": ORG_NAME, "UID": f"MCQ:{ORG_CODE}"}
    assert body["request"]["action"] == "issue" and body["certificate_profile"]["name"] == "organisation-seal"
    assert body["key"]["spec"] == "ec-p256" and len(body["key"]["spki_sha256"]) == 64
    assert body["csr_pem"] == csr.public_bytes(Encoding.PEM).decode()
    assert body["requester"]["username"] == "office-ra"
    assert [a["username"] for a in body["approvals"]] == ["office-admin"] and body["approvals"][0]["decided_at"]

    pdf = client.get(f"{awaiting.url}/summary.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    reader = PdfFileReader(BytesIO(pdf.data))
    assert len(reader.root["/Pages"]["/Kids"]) == 1
    box = [float(v) for v in reader.root["/Pages"]["/Kids"][0]["/MediaBox"]]
    assert box == pytest.approx([0, 0, 595.28, 841.89])  # A4
    path = tmp_path / "summary.pdf"
    path.write_bytes(pdf.data)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True,
                          text=True).stdout
    assert ORG_NAME in text and ORG_CODE in text and "PHIẾU ĐỀ NGHỊ CẤP CHỨNG THƯ CHỮ KÝ SỐ" in text
    assert "BEGIN CERTIFICATE REQUEST" in text
    event = last_audit(services)
    assert event.action == "certificate_request.export" and "summary-pdf" in event.detail


def test_only_ra_people_of_the_organisation_export(client: Any, world: World, awaiting: Awaiting) -> None:
    login(client, world, "office-auditor")
    assert_problem(client.get(f"{awaiting.url}/csr"), 403, "forbidden")
    client.delete("/v1/session")
    login(client, world, "other-admin")
    assert_problem(client.get(f"{awaiting.url}/summary"), 404, "not-found")
    client.delete("/v1/session")
    login(client, world, "root-admin")  # above the office: allowed
    assert client.get(f"{awaiting.url}/summary").status_code == 200
    assert_problem(client.get(f"/v1/admin/certificate-requests/{awaiting.request_id}/items/7/csr"), 404,
                   "not-found")


# -- import ----------------------------------------------------------------------------------------

def test_pem_bundle_activates_the_credential(client: Any, services: Services, world: World, token: hsm.Hsm,
                                             gov: GovernmentCa, awaiting: Awaiting, tmp_path: Path) -> None:
    leaf = gov.issue(awaiting.csr)
    login(client, world, "office-ra")
    resp = client.post(f"{awaiting.url}/certificate", data=gov.bundle(leaf), content_type=PEM)
    assert resp.status_code == 201, resp.json
    fingerprint = leaf.fingerprint(hashes.SHA256()).hex()
    assert resp.json["fingerprint_sha256"] == fingerprint and resp.json["source"] == "external"
    assert resp.json["credential_id"] == awaiting.credential_id and resp.json["request_status"] == "completed"
    status, certificate_id, item_status, request_status = _state(services, awaiting)
    assert (status, certificate_id, item_status, request_status) == ("active", resp.json["id"], "done", "completed")

    with services.db.session() as s:
        credential = s.get(Credential, awaiting.credential_id)
        row = s.get(IssuedCertificate, resp.json["id"])
        assert credential is not None and row is not None
        assert credential.certificate_der == leaf.public_bytes(Encoding.DER)
        chain = x509.load_pem_x509_certificates((credential.chain_pem or "").encode())
        assert chain == [gov.inter, gov.root]  # issuers up to the root, leaf excluded
        assert (row.source, row.organisation_id, row.credential_id) == ("external", world.office, credential.id)
    # openssl, independently: the stored certificate and chain verify.
    for name, cert in (("root", gov.root), ("inter", chain[0]), ("leaf", leaf)):
        (tmp_path / f"{name}.pem").write_bytes(cert.public_bytes(Encoding.PEM))
    verified = openssl("verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "inter.pem"),
                       str(tmp_path / "leaf.pem"))
    assert verified.returncode == 0 and b"leaf.pem: OK" in verified.stdout, verified

    event = last_audit(services)
    assert event.action == "certificate.import_issued" and fingerprint in event.detail
    assert gov.inter.fingerprint(hashes.SHA256()).hex() in event.detail

    # The hsm worker copies the certificate onto the token next to the key.
    assert token.certificate(awaiting.key_label) is None
    run_hsm_worker(services, burst=True)
    assert token.certificate(awaiting.key_label) == leaf.public_bytes(Encoding.DER)

    again = client.post(f"{awaiting.url}/certificate", data=gov.bundle(leaf), content_type=PEM)
    assert_problem(again, 409, "invalid-state")


@pytest.mark.one_db  # PKCS#7 parsing; activation stays on both
@pytest.mark.parametrize("outform", ["DER", "PEM"])
def test_pkcs7_from_openssl_is_accepted(client: Any, services: Services, world: World, gov: GovernmentCa,
                                        awaiting: Awaiting, tmp_path: Path, outform: str) -> None:
    leaf = gov.issue(awaiting.csr)
    bag = pkcs7(gov.bundle(leaf), tmp_path, outform)
    assert len(external.parse_certificates(bag)) == 3
    login(client, world, "office-admin")
    resp = client.post(f"{awaiting.url}/certificate", data=bag, content_type="application/pkcs7-mime")
    assert resp.status_code == 201, resp.json
    assert _state(services, awaiting)[0] == "active"


def test_der_certificate_chains_to_a_configured_root(services: Services, world: World, token: hsm.Hsm,
                                                     gov: GovernmentCa, tmp_path: Path) -> None:
    # The Government CA's root is configured (SIGNER_TRUST_ROOTS_FILE); the leaf comes alone, as DER,
    # issued directly by that root.
    a = make_awaiting(services, world, token)
    leaf = _cert(a.csr.subject, a.csr.public_key(), gov.root.subject, gov.root_key, ca=False)
    roots = tmp_path / "roots.pem"
    roots.write_bytes(gov.root.public_bytes(Encoding.PEM))
    with services.db.session() as s:
        row = external.import_issued(s, _ra(world), a.item_id, leaf.public_bytes(Encoding.DER),
                                     trust_roots_file=roots)
        assert row.fingerprint_sha256 == leaf.fingerprint(hashes.SHA256()).hex()
    assert _state(services, a)[0] == "active"
    assert '"root_configured":true' in last_audit(services).detail
    # Without the configured root the same DER leaf proves nothing.
    b = make_awaiting(services, world, token)
    other = _cert(b.csr.subject, b.csr.public_key(), gov.root.subject, gov.root_key, ca=False)
    with services.db.session() as s, pytest.raises(external.ChainInvalid):
        external.import_issued(s, _ra(world), b.item_id, other.public_bytes(Encoding.DER))


def unchanged_but_audit(services: Services, before: dict[str, Any], *, audited: int) -> bool:
    """Nothing changed since ``before`` but ``audited`` more audit rows (the refusals)."""
    after = dict(counts(services))
    before = dict(before)
    return bool(after.pop("audit_events") == before.pop("audit_events") + audited and after == before)


def _failed_audit(services: Services) -> AuditEvent:
    with services.db.session() as s:
        event = s.scalar(select(AuditEvent).where(AuditEvent.action == "certificate.import_issued")
                         .order_by(AuditEvent.seq.desc()).limit(1))
        assert event is not None
        return event


def test_certificate_for_another_key_is_refused(client: Any, services: Services, world: World,
                                                gov: GovernmentCa, awaiting: Awaiting) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    wrong = gov.issue(awaiting.csr, public_key=stranger.public_key())
    login(client, world, "office-ra")
    before = counts(services)
    resp = client.post(f"{awaiting.url}/certificate", data=gov.bundle(wrong), content_type=PEM)
    body = assert_problem(resp, 422, "key-mismatch")
    assert "khóa" in body["detail"]  # Vietnamese first
    assert unchanged_but_audit(services, before, audited=1)
    assert _state(services, awaiting) == ("pending", None, "awaiting", "awaiting_certificate")
    event = _failed_audit(services)
    assert event.outcome == "failed" and "key-mismatch" in event.detail
    assert wrong.fingerprint(hashes.SHA256()).hex() in event.detail


def test_chain_with_a_wrong_intermediate_is_refused(client: Any, services: Services, world: World,
                                                    gov: GovernmentCa, awaiting: Awaiting) -> None:
    leaf = gov.issue(awaiting.csr)
    # Same name as the real intermediate, another key: the leaf's signature does not verify under it.
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    impostor = _cert(gov.inter.subject, impostor_key.public_key(), gov.root.subject, gov.root_key, ca=True)
    login(client, world, "office-ra")
    before = counts(services)
    wrong = client.post(f"{awaiting.url}/certificate", data=gov.bundle(leaf, impostor, gov.root), content_type=PEM)
    assert_problem(wrong, 422, "chain-invalid")
    missing = client.post(f"{awaiting.url}/certificate", data=gov.bundle(leaf, gov.root), content_type=PEM)
    assert_problem(missing, 422, "chain-invalid")
    expired_inter = _cert(gov.inter.subject, gov.inter_key.public_key(), gov.root.subject, gov.root_key, ca=True,
                          start=dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    expired = client.post(f"{awaiting.url}/certificate", data=gov.bundle(leaf, expired_inter, gov.root),
                          content_type=PEM)
    assert_problem(expired, 422, "chain-invalid")
    assert unchanged_but_audit(services, before, audited=3)
    assert _state(services, awaiting) == ("pending", None, "awaiting", "awaiting_certificate")
    assert _failed_audit(services).outcome == "failed"


def test_unreadable_uploads_and_wrong_people(client: Any, services: Services, world: World,
                                             gov: GovernmentCa, awaiting: Awaiting) -> None:
    login(client, world, "office-ra")
    assert_problem(client.post(f"{awaiting.url}/certificate", data=b"not a certificate", content_type=PEM),
                   422, "invalid-certificate")
    key_only = (b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n"
                b"-----END PRIVATE KEY-----\n")
    refused = assert_problem(client.post(f"{awaiting.url}/certificate", data=key_only, content_type=PEM),
                             422, "invalid-certificate")
    assert "MIGHAgEA" not in refused["detail"]  # never echoed
    assert_problem(client.post(f"{awaiting.url}/certificate", data=b"{}", content_type="application/json"),
                   415, "unsupported-media-type")
    client.delete("/v1/session")
    login(client, world, "office-auditor")
    leaf = gov.issue(awaiting.csr)
    assert_problem(client.post(f"{awaiting.url}/certificate", data=gov.bundle(leaf), content_type=PEM),
                   403, "forbidden")
    assert _state(services, awaiting)[0] == "pending"


def test_parse_certificates_formats(gov: GovernmentCa, tmp_path: Path) -> None:
    pem = gov.bundle(gov.inter)
    assert external.parse_certificates(pem) == [gov.inter, gov.inter, gov.root]
    assert external.parse_certificates(gov.root.public_bytes(Encoding.DER)) == [gov.root]
    assert external.parse_certificates(pkcs7(pem, tmp_path, "DER"))[0] in (gov.inter, gov.root)
    # DER is binary: a certificate whose last byte looks like whitespace must survive intact.
    spacey = next(c for c in (_cert(_name("x"), gov.inter_key.public_key(), gov.root.subject, gov.root_key, ca=False)
                              for _ in range(5000)) if c.public_bytes(Encoding.DER)[-1:] in b" \t\n\r\x0b\x0c")
    assert external.parse_certificates(spacey.public_bytes(Encoding.DER)) == [spacey]
    damaged = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    for junk in (b"", b"   ", b"\x30\x03\x02\x01\x01", damaged):
        with pytest.raises(external.InvalidCertificate):
            external.parse_certificates(junk)
