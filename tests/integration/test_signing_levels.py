"""Every profile x level, for RSA-2048 and EC P-256 keys: pyHanko (B-LT and B-LTA offline from the
embedded data) and poppler's pdfsig both accept every signature; approved-then-issued keeps the
first signature intact."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature, validate_pdf_timestamp
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator import ValidationContext

import hsm
from signer.services import Services
from signer.signing.material import trust_roots
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.pdfs import decision_pdf
from tests.signing_support import SigningWorld, add_images, approve, make_signing_world
from tests.support import forced_reencodes

# PAdES levels and profiles (PDF, CMS, DSS, timestamps): nothing here depends on the database backend.
pytestmark = pytest.mark.one_db

LEVELS = ["B-B", "B-T", "B-LT", "B-LTA"]


@pytest.fixture(params=["rsa-2048", "ec-p256"])
def sw(request: pytest.FixtureRequest, services: Services, world: World, token: hsm.Hsm,
       client: Any) -> SigningWorld:
    result = make_signing_world(services, world, token, request.param)
    add_images(client, result)
    return result


def _doc(profile: str, level: str, pdf: bytes, **extra: Any) -> dict[str, Any]:
    return {"name": f"{profile} {level}", "format": "pades", "profile": profile, "level": level,
            "content": base64.b64encode(pdf).decode(), **extra}


def sign(client: Any, services: Services, sw: SigningWorld, credential: str, holder: Any,
         docs: list[dict[str, Any]]) -> list[bytes]:
    headers = {"Authorization": f"Bearer {sw.world.api_key}"}
    created = client.post("/v1/sign-requests", json={"credential_id": credential, "documents": docs},
                          headers=headers)
    assert created.status_code == 202, created.json
    assert approve(client, sw.world, holder, created.json).status_code == 202
    with forced_reencodes() as forced:
        run_hsm_worker(services, burst=True)
    assert forced == []  # DER in, DER out: a forced re-encode means asn1compat stopped working
    done = client.get(f"/v1/sign-requests/{created.json['id']}", headers=headers).json
    assert done["state"] == "COMPLETED", done
    return [client.get(d["signed_url"], headers=headers).data for d in done["documents"]]


def check(pdf: bytes, level: str, roots: list[asn1_x509.Certificate], tmp_path: Path, name: str,
          signatures: int = 1) -> None:
    reader = PdfFileReader(io.BytesIO(pdf))
    sigs = [s for s in reader.embedded_signatures if s.sig_object.get("/Type") != "/DocTimeStamp"]
    assert len(sigs) == signatures
    sig = sigs[-1]
    if level in ("B-LT", "B-LTA"):
        # Offline, and revocation status is mandatory: only what the PDF's DSS holds can supply it.
        context = DocumentSecurityStore.read_dss(reader).as_validation_context(
            {"trust_roots": roots, "allow_fetching": False, "revocation_mode": "hard-fail"})
        status = validate_pdf_signature(sig, context)
    else:
        status = validate_pdf_signature(sig, ValidationContext(trust_roots=roots, allow_fetching=False))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    if level != "B-B":
        assert status.timestamp_validity is not None and status.timestamp_validity.valid
    if level == "B-LTA":
        doc_ts = [s for s in reader.embedded_signatures if s.sig_object.get("/Type") == "/DocTimeStamp"]
        assert len(doc_ts) == signatures  # one document timestamp per B-LTA signing
        ts_status = validate_pdf_timestamp(doc_ts[0], ValidationContext(trust_roots=roots, allow_fetching=False))
        assert ts_status.valid and ts_status.trusted
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    report = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True, check=False).stdout
    assert report.count("Signature is Valid.") >= signatures, report


def test_every_profile_and_level(client: Any, services: Services, sw: SigningWorld, tmp_path: Path) -> None:
    with services.db.session() as s:
        roots = trust_roots(s)
    base = decision_pdf()
    first_round = [_doc("approved", lvl, base, placement={"anchor": "Nguyễn Văn An"}) for lvl in LEVELS]
    first_round += [_doc("appendix", lvl, base, document_number="Số: 07/QĐ-UBND") for lvl in LEVELS]
    first_round += [_doc("copy", lvl, base, copy_form="SAO Y") for lvl in LEVELS]
    outputs = sign(client, services, sw, sw.leader_credential, sw.leader, first_round[:4])
    outputs += sign(client, services, sw, sw.seal_credential, sw.clerk, first_round[4:])
    for doc, pdf in zip(first_round, outputs, strict=True):
        check(pdf, doc["level"], roots, tmp_path, doc["name"].replace(" ", "_"))

    # The organisation signs what the leader signed: both signatures stay valid, the first untouched.
    issued = [_doc("issued", lvl, pdf) for lvl, pdf in zip(LEVELS, outputs[:4], strict=True)]
    sealed = sign(client, services, sw, sw.seal_credential, sw.clerk, issued)
    for lvl, original, pdf in zip(LEVELS, outputs[:4], sealed, strict=True):
        assert pdf.startswith(original)  # an incremental update: the leader's bytes are untouched
        check(pdf, lvl, roots, tmp_path, f"issued_{lvl}", signatures=2)
        reader = PdfFileReader(io.BytesIO(pdf))
        first = validate_pdf_signature(reader.embedded_signatures[0],
                                       ValidationContext(trust_roots=roots, allow_fetching=False))
        assert first.intact and first.valid and first.trusted
