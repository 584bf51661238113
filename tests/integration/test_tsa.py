"""The RFC 3161 TSA on SoftHSM2 keys: openssl's ts client and verifier, rejections, and pyHanko
B-T signatures and document timestamps through the in-process timestamper."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import algos, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko_certvalidator import ValidationContext

import hsm
from hsm.pdf import HsmSigner
from signer.pki import builtin_ca, profiles
from signer.pki.builtin_ca import CaUrls
from signer.pki.errors import IssuerMismatch
from signer.pki.tsa import HsmTimeStamper, TimeStampAuthority, TimeStampResp
from tests.pdfs import blank_pdf

POLICY = profiles.tsa_policy_oid()
OTHER_POLICY = profiles.tsa_policy_oid("1.2.3.4")


def openssl(*args: str) -> str:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def vn_name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ban Cơ yếu Chính phủ (thử nghiệm)"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


@dataclass
class TsaSetup:
    root: x509.Certificate
    issuing: x509.Certificate
    tsa_label: str
    tsa_cert: x509.Certificate
    tsa: TimeStampAuthority
    signer_label: str
    signer_cert: x509.Certificate
    folder: Path

    def pem(self, name: str, *certs: x509.Certificate) -> str:
        path = self.folder / name
        path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certs))
        return str(path)

    def context(self) -> ValidationContext:
        return ValidationContext(trust_roots=[asn1(self.root)], allow_fetching=False,
                                 revocation_mode="soft-fail")


@pytest.fixture(scope="session")
def ca(token: hsm.Hsm) -> tuple[str, x509.Certificate, str, x509.Certificate]:
    tag = secrets.token_hex(3)
    spec = hsm.KeySpec.parse("ec-p256")
    root = builtin_ca.create_root(token, f"tsa-root-{tag}", vn_name("Root TSA thử nghiệm"), spec)
    issuing = builtin_ca.create_issuing(token, f"tsa-sub-{tag}", vn_name("CA dịch vụ thử nghiệm"), spec,
                                        f"tsa-root-{tag}", root, CaUrls("http://127.0.0.1:8000", "root"))
    return f"tsa-root-{tag}", root, f"tsa-sub-{tag}", issuing


@pytest.fixture(scope="session", params=["ec", "rsa"])
def setup(request: pytest.FixtureRequest, token: hsm.Hsm, rsa_key: hsm.KeyInfo,
          ca: tuple[str, x509.Certificate, str, x509.Certificate],
          tmp_path_factory: pytest.TempPathFactory) -> TsaSetup:
    _, root, sub_label, issuing = ca
    urls = CaUrls("http://127.0.0.1:8000", "sub")
    # The RSA TSA reuses the session's RSA fixture key: generating RSA keys in SoftHSM2 is slow.
    tsa_key = (token.generate_key(f"tsa-key-{secrets.token_hex(3)}", hsm.KeySpec.parse("ec-p256"))
               if request.param == "ec" else rsa_key)
    tsa_cert = builtin_ca.issue(token, sub_label, issuing, tsa_key.public_key_der,
                                vn_name(f"Dịch vụ cấp dấu thời gian {request.param}"), profiles.TSA, urls)
    tsa = TimeStampAuthority(token, tsa_key.label, tsa_cert, [issuing], POLICY,
                             accepted_policies=[OTHER_POLICY])
    signer_key = token.generate_key(f"tsa-signer-{secrets.token_hex(3)}", hsm.KeySpec.parse("ec-p256"))
    signer_cert = builtin_ca.issue(token, sub_label, issuing, signer_key.public_key_der,
                                   vn_name("Văn phòng UBND tỉnh"), profiles.SIGNING, urls)
    return TsaSetup(root, issuing, tsa_key.label, tsa_cert, tsa, signer_key.label, signer_cert,
                    tmp_path_factory.mktemp(f"tsa-{request.param}"))


def _query(setup: TsaSetup, name: str, *options: str) -> tuple[Path, bytes]:
    data = setup.folder / "data.txt"
    data.write_text("Công văn số 123/UBND-VP\n", encoding="utf-8")
    req = setup.folder / f"{name}.tsq"
    openssl("ts", "-query", "-data", str(data), *options, "-out", str(req))
    return data, req.read_bytes()


def _status(response_der: bytes) -> tuple[str, set[str]]:
    response = TimeStampResp.load(response_der)
    assert response["time_stamp_token"].native is None
    status = response["status"]
    return status["status"].native, set(status["fail_info"].native or ())


@pytest.mark.parametrize("policy", [None, OTHER_POLICY])
def test_openssl_query_reply_and_verify(setup: TsaSetup, policy: str | None) -> None:
    extra = ("-tspolicy", policy) if policy else ()
    data, request = _query(setup, "req", "-sha256", "-cert", *extra)
    resp = setup.folder / "resp.tsr"
    resp.write_bytes(setup.tsa.respond(request))
    req_text = openssl("ts", "-query", "-in", str(setup.folder / "req.tsq"), "-text")
    nonce = next(line.split(":", 1)[1].strip() for line in req_text.splitlines() if "Nonce:" in line)
    text = openssl("ts", "-reply", "-in", str(resp), "-text")
    assert "Status: Granted." in text and f"Policy OID: {policy or POLICY}" in text
    assert f"Nonce: {nonce}" in text and "Accuracy: 0x01 seconds" in text
    assert "Hash Algorithm: sha256" in text
    out = openssl("ts", "-verify", "-data", str(data), "-in", str(resp), "-CAfile",
                  setup.pem("root.pem", setup.root), "-untrusted", setup.pem("chain.pem", setup.issuing))
    assert "Verification: OK" in out


def test_without_cert_req_the_token_carries_no_certificates(setup: TsaSetup) -> None:
    data, request = _query(setup, "nocert", "-sha512", "-no_nonce")
    resp = setup.folder / "nocert.tsr"
    resp.write_bytes(setup.tsa.respond(request))
    token = tsp.TimeStampResp.load(resp.read_bytes())["time_stamp_token"]
    assert not token["content"]["certificates"].native
    out = openssl("ts", "-verify", "-data", str(data), "-in", str(resp), "-CAfile",
                  setup.pem("root.pem", setup.root),
                  "-untrusted", setup.pem("chain2.pem", setup.issuing, setup.tsa_cert))
    assert "Verification: OK" in out


def test_serial_numbers_are_unique_and_large(setup: TsaSetup) -> None:
    _, request = _query(setup, "serials", "-sha384", "-cert")
    serials = set()
    for _ in range(5):
        token = tsp.TimeStampResp.load(setup.tsa.respond(request))["time_stamp_token"]
        serials.add(token["content"]["encap_content_info"]["content"].parsed["serial_number"].native)
    assert len(serials) == 5 and min(serials).bit_length() > 64


def test_rejections(setup: TsaSetup) -> None:
    _, sha1 = _query(setup, "sha1", "-sha1", "-cert")
    assert _status(setup.tsa.respond(sha1)) == ("rejection", {"bad_alg"})
    _, unknown_policy = _query(setup, "pol", "-sha256", "-tspolicy", "1.2.3.99")
    assert _status(setup.tsa.respond(unknown_policy)) == ("rejection", {"unaccepted_policy"})
    for junk in (b"", b"garbage", b"\x30\x82\xff\xff", sha1[:-3], sha1 + b"\x00"):
        assert _status(setup.tsa.respond(junk)) == ("rejection", {"bad_data_format"})
    wrong_length = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}), "hashed_message": b"\x00" * 20}})
    assert _status(setup.tsa.respond(wrong_length.dump())) == ("rejection", {"bad_data_format"})
    v2 = tsp.TimeStampReq({"version": 2, "message_imprint": {
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}), "hashed_message": b"\x00" * 32}})
    assert _status(setup.tsa.respond(v2.dump())) == ("rejection", {"bad_request"})


def test_rejection_reaches_pyhanko_as_a_request_error(setup: TsaSetup, token: hsm.Hsm) -> None:
    picky = HsmTimeStamper(TimeStampAuthority(token, setup.tsa_label, setup.tsa_cert, [], POLICY))
    with pytest.raises(TimestampRequestError, match="hash algorithm not accepted"):
        asyncio.run(picky.async_timestamp(b"\x00" * 20, "sha1"))


def test_tsa_certificate_must_be_a_tsa_certificate(setup: TsaSetup, token: hsm.Hsm) -> None:
    with pytest.raises(IssuerMismatch):
        TimeStampAuthority(token, setup.signer_label, setup.signer_cert, [], POLICY)



def test_pades_b_t_signature_with_hsm_timestamper(setup: TsaSetup, token: hsm.Hsm) -> None:
    signer = HsmSigner(token, setup.signer_label, asn1(setup.signer_cert), [asn1(setup.issuing)])
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(blank_pdf())),
                           signers.PdfSignatureMetadata(field_name="ChuKy1"), signer=signer,
                           timestamper=HsmTimeStamper(setup.tsa))
    vc = setup.context()
    status = validate_pdf_signature(PdfFileReader(out).embedded_signatures[0],
                                    signer_validation_context=vc, ts_validation_context=vc)
    assert status.intact and status.valid and status.trusted
    ts = status.timestamp_validity
    assert ts is not None and ts.intact and ts.valid and ts.trusted
    assert abs(ts.timestamp - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert ts.signing_cert.subject == asn1(setup.tsa_cert).subject


def test_document_timestamp_with_hsm_timestamper(setup: TsaSetup) -> None:
    vc = setup.context()
    out = signers.PdfTimeStamper(HsmTimeStamper(setup.tsa)).timestamp_pdf(
        IncrementalPdfFileWriter(io.BytesIO(blank_pdf())), "sha256", validation_context=vc)
    status = validate_pdf_timestamp(PdfFileReader(out).embedded_signatures[0], validation_context=vc)
    assert status.intact and status.valid and status.trusted
