"""HSM keys behind `cryptography` (CSR, certificate, CRL, OCSP) and pyHanko (PAdES), each result
checked by an independent verifier: openssl, pyHanko validation and poppler's pdfsig."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import subprocess
from pathlib import Path

import pytest
from asn1crypto import algos, cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.general import optimal_pss_params
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

import hsm
from hsm.keys import HsmECPrivateKey, HsmRSAPrivateKey, private_key
from hsm.pdf import HsmSigner
from tests.pdfs import blank_pdf
from tests.pki import name, self_signed


def openssl(*args: str) -> str:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


@pytest.fixture(params=["rsa", "ec"])
def hsm_key(request: pytest.FixtureRequest, token: hsm.Hsm, rsa_key: hsm.KeyInfo,
            ec_key: hsm.KeyInfo) -> HsmRSAPrivateKey | HsmECPrivateKey:
    return private_key(token, (rsa_key if request.param == "rsa" else ec_key).label)


def test_private_key_cannot_be_exported(hsm_key: HsmRSAPrivateKey | HsmECPrivateKey) -> None:
    with pytest.raises(hsm.MechanismUnsupported):
        hsm_key.private_bytes()
    with pytest.raises(hsm.MechanismUnsupported):
        hsm_key.private_numbers()


def test_csr_signed_in_hsm_verifies_with_openssl(hsm_key: HsmRSAPrivateKey | HsmECPrivateKey,
                                                 tmp_path: Path) -> None:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(name("Trần Thị Bình"))
           .sign(hsm_key, hashes.SHA256()))
    path = tmp_path / "req.pem"
    path.write_bytes(csr.public_bytes(Encoding.PEM))
    assert "verify OK" in openssl("req", "-in", str(path), "-verify", "-noout")


def test_certificate_crl_and_ocsp_signed_in_hsm_verify_with_openssl(
        hsm_key: HsmRSAPrivateKey | HsmECPrivateKey, tmp_path: Path) -> None:
    ca = self_signed(hsm_key, "CA thử nghiệm")
    ca_pem = tmp_path / "ca.pem"
    ca_pem.write_bytes(ca.public_bytes(Encoding.PEM))
    assert "OK" in openssl("verify", "-CAfile", str(ca_pem), str(ca_pem))

    now = dt.datetime.now(dt.UTC)
    revoked = (x509.RevokedCertificateBuilder().serial_number(0x1234).revocation_date(now)
               .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False).build())
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
           .last_update(now).next_update(now + dt.timedelta(days=1))
           .add_revoked_certificate(revoked).sign(hsm_key, hashes.SHA256()))
    crl_pem = tmp_path / "crl.pem"
    crl_pem.write_bytes(crl.public_bytes(Encoding.PEM))
    text = openssl("crl", "-in", str(crl_pem), "-CAfile", str(ca_pem), "-noout", "-text")
    assert "verify OK" in text and "1234" in text and "Key Compromise" in text

    req = ocsp.OCSPRequestBuilder().add_certificate(ca, ca, hashes.SHA1()).build()
    resp = (ocsp.OCSPResponseBuilder()
            .add_response(cert=ca, issuer=ca, algorithm=hashes.SHA1(),
                          cert_status=ocsp.OCSPCertStatus.GOOD, this_update=now,
                          next_update=now + dt.timedelta(hours=1), revocation_time=None,
                          revocation_reason=None)
            .responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
            .sign(hsm_key, hashes.SHA256()))
    (tmp_path / "req.der").write_bytes(req.public_bytes(Encoding.DER))
    (tmp_path / "resp.der").write_bytes(resp.public_bytes(Encoding.DER))
    out = openssl("ocsp", "-respin", str(tmp_path / "resp.der"), "-reqin", str(tmp_path / "req.der"),
                  "-issuer", str(ca_pem), "-cert", str(ca_pem), "-CAfile", str(ca_pem))
    assert "Response verify OK" in out and ": good" in out


def test_rsa_pss_through_cryptography(token: hsm.Hsm, rsa_key: hsm.KeyInfo) -> None:
    key = private_key(token, rsa_key.label)
    assert isinstance(key, HsmRSAPrivateKey)
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    signature = key.sign(b"data", pss, hashes.SHA256())
    key.public_key().verify(signature, b"data", pss, hashes.SHA256())
    with pytest.raises(hsm.MechanismUnsupported):
        key.sign(b"data", padding.PSS(padding.MGF1(hashes.SHA256()), 7), hashes.SHA256())
    # The token's MGF1 always uses the signing hash: another one would not verify.
    with pytest.raises(hsm.MechanismUnsupported, match="MGF1"):
        key.sign(b"data", padding.PSS(padding.MGF1(hashes.SHA1()), padding.PSS.DIGEST_LENGTH),
                 hashes.SHA256())
    with pytest.raises(hsm.MechanismUnsupported, match="MGF1"):
        key.sign(b"data", padding.PSS(padding.MGF1(hashes.SHA512()), 32), hashes.SHA256())
    sha384_pss = padding.PSS(padding.MGF1(hashes.SHA384()), padding.PSS.DIGEST_LENGTH)
    key.public_key().verify(key.sign(b"data", sha384_pss, hashes.SHA384()), b"data", sha384_pss,
                            hashes.SHA384())



def _sign_and_check_pdf(signer: HsmSigner, asn1_cert: asn1_x509.Certificate, tmp_path: Path,
                        md_algorithm: str | None = None) -> cms.SignerInfo:
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(blank_pdf())),
                           signers.PdfSignatureMetadata(field_name="ChuKy1", md_algorithm=md_algorithm),
                           signer=signer)
    embedded = PdfFileReader(out).embedded_signatures[0]
    status = validate_pdf_signature(embedded, ValidationContext(trust_roots=[asn1_cert]))
    assert status.intact and status.valid and status.trusted
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(out.getvalue())
    report = subprocess.run(["pdfsig", str(pdf)], capture_output=True, text=True, check=False).stdout
    assert "Signature is Valid." in report, report
    assert "Nguyễn Văn An" in report
    signer_info: cms.SignerInfo = embedded.signer_info
    return signer_info


def test_pades_signature_from_hsm_validates_in_pyhanko_and_pdfsig(
        hsm_key: HsmRSAPrivateKey | HsmECPrivateKey, token: hsm.Hsm, tmp_path: Path) -> None:
    cert = self_signed(hsm_key, "Nguyễn Văn An")
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    _sign_and_check_pdf(HsmSigner(token, hsm_key.label, asn1_cert), asn1_cert, tmp_path)


@pytest.mark.parametrize("md", ["sha256", "sha384", "sha512"])
def test_pss_pades_signature_declares_the_salt_the_hsm_used(
        token: hsm.Hsm, rsa_key: hsm.KeyInfo, tmp_path: Path, md: str) -> None:
    # pyHanko's default PSS parameters declare the maximum salt length; the HSM signs with
    # salt = digest length, so the declared parameters must say so or verification fails.
    key = private_key(token, rsa_key.label)
    cert = self_signed(key, "Nguyễn Văn An")
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    signer_info = _sign_and_check_pdf(HsmSigner(token, rsa_key.label, asn1_cert, prefer_pss=True),
                                      asn1_cert, tmp_path, md_algorithm=md)
    algorithm = signer_info["signature_algorithm"]
    assert algorithm["algorithm"].native == "rsassa_pss"
    params = algorithm["parameters"]
    assert params["hash_algorithm"]["algorithm"].native == md
    assert params["mask_gen_algorithm"]["algorithm"].native == "mgf1"
    assert params["mask_gen_algorithm"]["parameters"]["algorithm"].native == md
    assert params["salt_length"].native == hashlib.new(md).digest_size


def test_hsm_signer_refuses_pss_parameters_the_hsm_cannot_honour(
        token: hsm.Hsm, rsa_key: hsm.KeyInfo) -> None:
    key = private_key(token, rsa_key.label)
    asn1_cert = asn1_x509.Certificate.load(self_signed(key, "An").public_bytes(Encoding.DER))
    max_salt = algos.SignedDigestAlgorithm({
        "algorithm": "rsassa_pss", "parameters": optimal_pss_params(asn1_cert, "sha256")})
    signer = HsmSigner(token, rsa_key.label, asn1_cert, signature_mechanism=max_salt)
    with pytest.raises(hsm.MechanismUnsupported, match="salt"):
        signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(blank_pdf())),
                         signers.PdfSignatureMetadata(field_name="ChuKy1"), signer=signer)
