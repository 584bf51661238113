"""The built-in CA on SoftHSM2 keys, each artefact checked by independent verifiers: openssl and
pyhanko-certvalidator. RSA and EC hierarchies; CA keys are made once per session."""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError

import hsm
from signer.pki import builtin_ca, profiles
from signer.pki.builtin_ca import CaUrls, CertId, RevokedEntry
from signer.pki.errors import InvalidInput, IssuerMismatch

BASE = "http://127.0.0.1:8000"
LEADER = "Nguyễn Thị Ánh Tuyết"


def openssl(*args: str, ok: bool = True) -> str:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if ok:
        assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def vn_name(common_name: str, org: str = "Ủy ban nhân dân tỉnh Tây Ninh") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Tây Ninh"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def pem(path: Path, *certs: x509.Certificate) -> str:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
    return str(path)


def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


@dataclass
class Pki:
    kind: str
    root_label: str
    root: x509.Certificate
    issuing_label: str
    issuing: x509.Certificate
    responder_label: str
    responder: x509.Certificate
    ee_label: str
    ee: x509.Certificate
    issuing_urls: CaUrls  # what the issuing CA puts into the certificates it issues
    folder: Path

    def file(self, name: str, *certs: x509.Certificate) -> str:
        return pem(self.folder / name, *certs)


@pytest.fixture(scope="session", params=["rsa", "ec"])
def pki(request: pytest.FixtureRequest, token: hsm.Hsm, rsa_key: hsm.KeyInfo, ec_key: hsm.KeyInfo,
        tmp_path_factory: pytest.TempPathFactory) -> Pki:
    kind: str = request.param
    spec = hsm.KeySpec.parse("rsa-2048" if kind == "rsa" else "ec-p256")
    tag = f"{kind}-{secrets.token_hex(3)}"
    root_label, issuing_label, responder_label = (f"pki-{n}-{tag}" for n in ("root", "sub", "ocsp"))
    root = builtin_ca.create_root(token, root_label, vn_name(f"Root CA thử nghiệm {kind}"), spec)
    root_urls = CaUrls(BASE, f"root-{kind}")
    issuing = builtin_ca.create_issuing(token, issuing_label, vn_name(f"CA cấp dưới {kind}"), spec,
                                        root_label, root, root_urls)
    urls = CaUrls(BASE, f"sub-{kind}")
    responder_key = token.generate_key(responder_label, hsm.KeySpec.parse("ec-p256"))
    responder = builtin_ca.issue(token, issuing_label, issuing, responder_key.public_key_der,
                                 vn_name(f"OCSP {kind}"), profiles.OCSP_RESPONDER, urls)
    # The end-entity key is the session's fixture key of the same family: no extra key generation.
    ee_key = rsa_key if kind == "rsa" else ec_key
    ee = builtin_ca.issue(token, issuing_label, issuing, ee_key.public_key_der, vn_name(LEADER),
                          profiles.SIGNING, urls)
    return Pki(kind, root_label, root, issuing_label, issuing, responder_label, responder,
               ee_key.label, ee, urls, tmp_path_factory.mktemp(f"pki-{kind}"))


def test_chain_verifies_with_openssl(pki: Pki) -> None:
    root, sub = pki.file("root.pem", pki.root), pki.file("issuing.pem", pki.issuing)
    for name, cert in (("ee.pem", pki.ee), ("ocsp.pem", pki.responder)):
        out = openssl("verify", "-x509_strict", "-CAfile", root, "-untrusted", sub, pki.file(name, cert))
        assert f"{name}: OK" in out
    assert "issuing.pem: OK" in openssl("verify", "-x509_strict", "-CAfile", root, sub)


def test_end_entity_certificate_contents(pki: Pki) -> None:
    text = openssl("x509", "-in", pki.file("ee.pem", pki.ee), "-noout", "-text", "-nameopt", "utf8")
    assert f"CN={LEADER}" in text and "O=Ủy ban nhân dân tỉnh Tây Ninh" in text
    assert "Digital Signature, Non Repudiation" in text and "CA:FALSE" in text
    assert f"OCSP - URI:{BASE}/pki/ocsp" in text
    assert f"CA Issuers - URI:{BASE}/pki/ca/sub-{pki.kind}.cer" in text
    assert f"URI:{BASE}/pki/crl/sub-{pki.kind}.crl" in text
    assert profiles.SIGNING.policy_oid is not None and profiles.SIGNING.policy_oid in text
    assert pki.ee.serial_number.bit_length() >= 64
    assert pki.ee.signature_hash_algorithm is not None and pki.ee.signature_hash_algorithm.name == "sha256"
    # Names are UTF8String (not T61/BMP), except countryName which X.520 makes PrintableString.
    cn = pki.ee.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0]
    assert cn.value == LEADER and cn._type.name == "UTF8String"
    aki = pki.ee.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = pki.issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert pki.ee.not_valid_after_utc <= pki.issuing.not_valid_after_utc


def test_ca_and_responder_certificate_contents(pki: Pki) -> None:
    text = openssl("x509", "-in", pki.file("issuing.pem", pki.issuing), "-noout", "-text")
    assert "CA:TRUE, pathlen:0" in text and "Certificate Sign, CRL Sign" in text
    assert f"{BASE}/pki/crl/root-{pki.kind}.crl" in text and "X509v3 Any Policy" in text
    root_text = openssl("x509", "-in", pki.file("root.pem", pki.root), "-noout", "-text")
    assert "Authority Information Access" not in root_text and "CRL Distribution" not in root_text
    text = openssl("x509", "-in", pki.file("ocsp.pem", pki.responder), "-noout", "-text")
    assert "OCSP Signing" in text and "OCSP No Check" in text


def test_crl_lists_revoked_serial_with_reason(pki: Pki, token: hsm.Hsm) -> None:
    now = dt.datetime.now(dt.UTC)
    crl = builtin_ca.make_crl(
        token, pki.issuing_label, pki.issuing,
        [RevokedEntry(pki.ee.serial_number, now, x509.ReasonFlags.key_compromise,
                      invalidity_date=now - dt.timedelta(days=1)),
         RevokedEntry(12345, now, None)],
        crl_number=7, this_update=now, next_update=now + dt.timedelta(days=7))
    path = pki.folder / "sub.crl"
    path.write_bytes(crl.public_bytes(Encoding.PEM))
    chain = pki.file("chain.pem", pki.root, pki.issuing)
    text = openssl("crl", "-in", str(path), "-CAfile", chain, "-noout", "-text")
    assert "verify OK" in text
    assert f"{pki.ee.serial_number:X}" in text.replace(":", "").upper()
    assert "Key Compromise" in text and "Invalidity Date" in text
    assert "X509v3 CRL Number" in text and "\n                7\n" in text
    assert "X509v3 Authority Key Identifier" in text
    # Wrong issuer: the root's certificate does not verify the issuing CA's CRL.
    assert "verify OK" not in openssl("crl", "-in", str(path), "-CAfile", pki.file("root.pem", pki.root),
                                       "-noout", ok=False)


@pytest.mark.parametrize("status", ["good", "revoked", "unknown"])
def test_ocsp_response_verifies_with_openssl(pki: Pki, token: hsm.Hsm, status: str) -> None:
    issuer, ee = pki.file("issuing.pem", pki.issuing), pki.file("ee.pem", pki.ee)
    req, resp = pki.folder / f"req-{status}.der", pki.folder / f"resp-{status}.der"
    openssl("ocsp", "-issuer", issuer, "-cert", ee, "-reqout", str(req))  # with a nonce
    query = builtin_ca.parse_ocsp_request(req.read_bytes())
    assert query.cert_id == CertId.for_serial(pki.issuing, pki.ee.serial_number)
    assert query.nonce is not None
    now = dt.datetime.now(dt.UTC)
    revoked = status == "revoked"
    resp.write_bytes(builtin_ca.make_ocsp_response(
        token, pki.responder_label, pki.responder, query.cert_id, ocsp.OCSPCertStatus[status.upper()],
        this_update=now, next_update=now + dt.timedelta(hours=4),
        revoked_at=now - dt.timedelta(hours=1) if revoked else None,
        reason=x509.ReasonFlags.key_compromise if revoked else None, nonce=query.nonce))
    # -reqin alone: with -cert openssl would build a fresh request (and nonce) of its own.
    out = openssl("ocsp", "-reqin", str(req), "-respin", str(resp), "-resp_text",
                  "-CAfile", pki.file("root.pem", pki.root), "-verify_other", issuer)
    assert "Response verify OK" in out and f"Cert Status: {status}" in out
    serial = f"{pki.ee.serial_number:X}"
    serial = serial.zfill(len(serial) + len(serial) % 2)  # openssl prints whole octets: 0x073D... not 0x73D...
    assert f"Serial Number: {serial}" in out
    if revoked:
        assert "Revocation Reason: keyCompromise" in out
    # The nonce is checked: another request (another nonce) does not match this response.
    other = pki.folder / f"other-{status}.der"
    openssl("ocsp", "-issuer", issuer, "-cert", ee, "-reqout", str(other))
    assert "Nonce Verify error" in openssl("ocsp", "-reqin", str(other), "-respin", str(resp),
                                           "-CAfile", pki.file("root.pem", pki.root),
                                           "-verify_other", issuer, ok=False)


def test_ocsp_checks_and_error_response(pki: Pki, token: hsm.Hsm) -> None:
    now = dt.datetime.now(dt.UTC)
    cert_id = CertId.for_serial(pki.issuing, pki.ee.serial_number, hashes.SHA256())
    with pytest.raises(IssuerMismatch):  # the root has no id-kp-OCSPSigning and is not the CertID's CA
        builtin_ca.make_ocsp_response(token, pki.root_label, pki.root, cert_id,
                                      ocsp.OCSPCertStatus.GOOD, this_update=now,
                                      next_update=now + dt.timedelta(hours=1))
    # The CA itself may answer for the certificates it issued (RFC 6960 4.2.2.2).
    own = ocsp.load_der_ocsp_response(builtin_ca.make_ocsp_response(
        token, pki.issuing_label, pki.issuing, cert_id, ocsp.OCSPCertStatus.GOOD, this_update=now,
        next_update=now + dt.timedelta(hours=1)))
    assert own.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL and own.serial_number == pki.ee.serial_number
    with pytest.raises(InvalidInput):
        builtin_ca.make_ocsp_response(token, pki.responder_label, pki.responder, cert_id,
                                      ocsp.OCSPCertStatus.REVOKED, this_update=now,
                                      next_update=now + dt.timedelta(hours=1))
    with pytest.raises(InvalidInput):
        builtin_ca.parse_ocsp_request(b"\x30\x03junk")
    error = ocsp.load_der_ocsp_response(builtin_ca.ocsp_error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED))
    assert error.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def _validate(pki: Pki, vc: ValidationContext) -> None:
    validator = CertificateValidator(asn1(pki.ee), intermediate_certs=[asn1(pki.issuing)],
                                     validation_context=vc)
    asyncio.run(validator.async_validate_usage({"digital_signature", "non_repudiation"}))


def test_certvalidator_with_crls_then_revoked(pki: Pki, token: hsm.Hsm) -> None:
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(days=1)
    root_crl = builtin_ca.make_crl(token, pki.root_label, pki.root, [], 1, now, later)

    def context(revoked: list[RevokedEntry], number: int) -> ValidationContext:
        sub_crl = builtin_ca.make_crl(token, pki.issuing_label, pki.issuing, revoked, number, now, later)
        return ValidationContext(
            trust_roots=[asn1(pki.root)], allow_fetching=False, revocation_mode="hard-fail",
            crls=[root_crl.public_bytes(Encoding.DER), sub_crl.public_bytes(Encoding.DER)])

    _validate(pki, context([], 1))
    revoked = [RevokedEntry(pki.ee.serial_number, now - dt.timedelta(minutes=1),
                            x509.ReasonFlags.key_compromise)]
    with pytest.raises(RevokedError):
        _validate(pki, context(revoked, 2))


def test_certvalidator_with_ocsp(pki: Pki, token: hsm.Hsm) -> None:
    now = dt.datetime.now(dt.UTC)
    later = now + dt.timedelta(hours=4)
    root_crl = builtin_ca.make_crl(token, pki.root_label, pki.root, [], 1, now, later)
    response = builtin_ca.make_ocsp_response(
        token, pki.responder_label, pki.responder, CertId.for_serial(pki.issuing, pki.ee.serial_number),
        ocsp.OCSPCertStatus.GOOD, this_update=now, next_update=later)
    vc = ValidationContext(trust_roots=[asn1(pki.root)], allow_fetching=False,
                           revocation_mode="hard-fail", other_certs=[asn1(pki.responder)],
                           crls=[root_crl.public_bytes(Encoding.DER)], ocsps=[response])
    _validate(pki, vc)


def test_p384_issuer_signs_with_sha384(token: hsm.Hsm, ec_key: hsm.KeyInfo, tmp_path: Path) -> None:
    label = f"pki-p384-{secrets.token_hex(3)}"
    root = builtin_ca.create_root(token, label, vn_name("Root P-384"), hsm.KeySpec.parse("ec-p384"),
                                  validity_days=30)
    ee = builtin_ca.issue(token, label, root, ec_key.public_key_der, vn_name(LEADER), profiles.SIGNING,
                          CaUrls(BASE + "/", "p384"), validity_days=400)
    assert root.signature_hash_algorithm is not None and root.signature_hash_algorithm.name == "sha384"
    assert ee.not_valid_after_utc == root.not_valid_after_utc  # clipped to the issuer
    out = openssl("verify", "-CAfile", pem(tmp_path / "r.pem", root), pem(tmp_path / "e.pem", ee))
    assert "e.pem: OK" in out


def test_refusals(pki: Pki, token: hsm.Hsm, ec_key: hsm.KeyInfo) -> None:
    def issue(label: str, cert: x509.Certificate, der: bytes = ec_key.public_key_der) -> x509.Certificate:
        return builtin_ca.issue(token, label, cert, der, vn_name("x"), profiles.SIGNING, pki.issuing_urls)

    with pytest.raises(IssuerMismatch):  # key and certificate of different CAs
        issue(pki.root_label, pki.issuing)
    with pytest.raises(IssuerMismatch):  # an end-entity certificate cannot issue
        issue(pki.ee_label, pki.ee)
    with pytest.raises(InvalidInput):
        issue(pki.issuing_label, pki.issuing, b"not a key")
    with pytest.raises(IssuerMismatch):  # pathlen:0 - the issuing CA cannot make another CA
        builtin_ca.issue(token, pki.issuing_label, pki.issuing, ec_key.public_key_der, vn_name("x"),
                         profiles.ISSUING_CA, pki.issuing_urls)
    with pytest.raises(InvalidInput):
        builtin_ca.issue(token, pki.issuing_label, pki.issuing, ec_key.public_key_der, vn_name("x"),
                         profiles.SIGNING, pki.issuing_urls, not_before=dt.datetime(2030, 1, 1))
    for base, slug in (("ftp://x", "a"), ("http://x?q=1", "a"), (BASE, "Bad Slug")):
        with pytest.raises(InvalidInput):
            CaUrls(base, slug)
    with pytest.raises(InvalidInput):
        profiles.SIGNING.with_policy_arc("1.2.x")
    assert profiles.SIGNING.with_policy_arc("1.2.3").policy_oid == "1.2.3.1.1"


def test_failed_root_creation_leaves_no_key(token: hsm.Hsm) -> None:
    label = f"pki-broken-{secrets.token_hex(3)}"
    with pytest.raises(InvalidInput):
        builtin_ca.create_root(token, label, vn_name("x"), hsm.KeySpec.parse("ec-p256"), validity_days=0)
    assert label not in token.list_keys()
