"""One request end to end: create, approve on the 'phone', sign in the hsm worker, download,
validate independently."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

import hsm
from signer.services import Services
from signer.signing.material import trust_roots
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.pdfs import decision_pdf
from tests.signing_support import SigningWorld, add_images, approve, make_signing_world


@pytest.fixture(params=["ec-p256"])
def sw(request: pytest.FixtureRequest, services: Services, world: World, token: hsm.Hsm,
       client: Any) -> SigningWorld:
    result = make_signing_world(services, world, token, request.param)
    add_images(client, result)
    return result


def bearer(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.api_key}"}


def roots(services: Services) -> list[asn1_x509.Certificate]:
    with services.db.session() as s:
        return trust_roots(s)


def test_approved_b_b_end_to_end(client: Any, services: Services, sw: SigningWorld, tmp_path: Path) -> None:
    body = {"credential_id": sw.leader_credential, "documents": [{
        "name": "Quyết định số 07/QĐ-UBND", "format": "pades", "profile": "approved", "level": "B-B",
        "content": base64.b64encode(decision_pdf()).decode(),
        "placement": {"anchor": "Nguyễn Văn An"}}]}
    created = client.post("/v1/sign-requests", json=body, headers=bearer(sw.world))
    assert created.status_code == 202, created.json
    req = created.json
    assert req["state"] == "AWAITING_APPROVAL" and len(req["verification_code"]) == 4
    assert approve(client, sw.world, sw.leader, req).status_code == 202
    run_hsm_worker(services, burst=True)
    done = client.get(f"/v1/sign-requests/{req['id']}", headers=bearer(sw.world)).json
    assert done["state"] == "COMPLETED", done
    pdf = client.get(done["documents"][0]["signed_url"], headers=bearer(sw.world))
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    reader = PdfFileReader(io.BytesIO(pdf.data))
    status = validate_pdf_signature(reader.embedded_signatures[0], ValidationContext(trust_roots=roots(services)))
    assert status.bottom_line, status.pretty_print_details()
    out = tmp_path / "signed.pdf"
    out.write_bytes(pdf.data)
    report = subprocess.run(["pdfsig", str(out)], capture_output=True, text=True, check=False).stdout
    assert "Signature is Valid." in report
