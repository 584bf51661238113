"""``POST /v1/verify``: documents signed through the real pipeline (B-B, B-T, B-LTA and a detached
CMS) are reported intact, valid and trusted at the right level; altered, unsigned, damaged and
mismatched inputs are reported as such; the ``verify`` scope is enforced."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import pyhanko_certvalidator.context as certvalidator_context
import pytest
from flask import Flask
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from sqlalchemy import select

import hsm
from signer import directory
from signer.api import verify as verify_api
from signer.app import create_app
from signer.models import AuditEvent
from signer.pki.revocation import revoke_credential
from signer.pki.service import publish_crls
from signer.principal import SYSTEM
from signer.services import Services
from signer.settings import Settings
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.signing_support import SigningWorld, approve, make_signing_world

# Verification reports (PDF/CMS validation): nothing here depends on the database backend; revocation
# itself is covered on both backends by test_revocation.py.
pytestmark = pytest.mark.one_db

CONTENT = b"BT /F1 18 Tf 72 760 Td (Quyet dinh so 07) Tj ET"
XML = "<VanBan>Nội dung bất kỳ</VanBan>".encode()


@pytest.fixture
def app(settings: Settings, services: Services) -> Flask:
    """The application with the verify blueprint, whether or not ``create_app`` registers it yet."""
    application = create_app(settings, services)
    if verify_api.bp.name not in application.blueprints:
        application.register_blueprint(verify_api.bp)
    application.testing = True
    return application


def one_page_pdf(content: bytes = CONTENT) -> bytes:
    writer = PdfFileWriter(stream_xrefs=False)
    stream = writer.add_object(generic.StreamObject(stream_data=content))
    writer.insert_page(PageObject(stream, (0, 0, 595, 842)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def auth(world: World) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.api_key}"}


def checked(resp: Any) -> Any:
    """Every 200 answer has exactly the documented shape."""
    if resp.status_code == 200:
        verify_api.VerifyReportOut.model_validate(resp.json)
    return resp


def post_pdf(client: Any, world: World, pdf: bytes) -> Any:
    return checked(client.post("/v1/verify", data=pdf, content_type="application/pdf", headers=auth(world)))


def post_cms(client: Any, world: World, content: bytes, signature: bytes) -> Any:
    data = {"file": (io.BytesIO(content), "doc.xml"), "signature": (io.BytesIO(signature), "doc.p7s")}
    return checked(client.post("/v1/verify", data=data, content_type="multipart/form-data",
                               headers=auth(world)))


def sign_documents(client: Any, services: Services, sw: SigningWorld) -> dict[str, bytes]:
    """One request, one approval: appendix PDFs at B-B, B-T, B-LTA and a detached CMS over XML."""
    pdf = base64.b64encode(one_page_pdf()).decode()
    docs: list[dict[str, Any]] = [
        {"name": f"PDF {lvl}", "format": "pades", "profile": "appendix", "level": lvl, "content": pdf,
         "document_number": "Số: 07/QĐ-UBND"} for lvl in ("B-B", "B-T", "B-LTA")]
    docs.append({"name": "XML", "format": "cades", "level": "B-T",
                 "content": base64.b64encode(XML).decode()})
    headers = auth(sw.world)
    created = client.post("/v1/sign-requests", json={"credential_id": sw.seal_credential, "documents": docs},
                          headers=headers)
    assert created.status_code == 202, created.json
    assert approve(client, sw.world, sw.clerk, created.json).status_code == 202
    run_hsm_worker(services, burst=True)
    done = client.get(f"/v1/sign-requests/{created.json['id']}", headers=headers).json
    assert done["state"] == "COMPLETED", done
    return {d["name"]: client.get(d["signed_url"], headers=headers).data for d in done["documents"]}


def assert_good(report: dict[str, Any], level: str, source: str) -> dict[str, Any]:
    assert report["summary"]["all_valid"], json.dumps(report, indent=1)
    sig: dict[str, Any] = report["signatures"][0]
    assert len(report["signatures"]) == 1 and sig["ok"]
    assert sig["integrity"]["intact"] and sig["integrity"]["valid"]
    assert sig["trust"]["trusted"] and sig["trust"]["trust_problem"] is None
    assert sig["trust"]["anchor"] == "UBND tỉnh Tây Ninh Root CA"
    assert sig["level"] == level, json.dumps(sig, indent=1)
    assert sig["revocation"] == {"status": "good", "source": source}
    assert sig["signer"]["organisation"] and len(sig["signer"]["sha256"]) == 64
    assert sig["signing_time"] is not None
    assert (sig["timestamp"] is None) == (level == "B-B")
    return sig


def append_page_change(pdf: bytes) -> bytes:
    """An incremental update that replaces page 1's content: not allowed after a signature."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    page = writer.find_page_for_modification(0)[0].get_object()
    page["/Contents"] = writer.add_object(generic.StreamObject(stream_data=b"BT (forged) Tj ET"))
    writer.update_container(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def flip_signed_byte(pdf: bytes) -> bytes:
    """Change one byte of the page content, inside the signed byte range."""
    at = pdf.index(b"Quyet dinh so 07") + 14
    return pdf[:at] + b"8" + pdf[at + 1:]


def check_levels(client: Any, world: World, signed: dict[str, bytes]) -> None:
    """Each signed document: intact, valid, trusted, at the level it was signed to."""
    bb = post_pdf(client, world, signed["PDF B-B"])
    assert bb.status_code == 200, bb.json
    sig = assert_good(bb.json, "B-B", "service")
    assert sig["field"].startswith("ChuKyPhuLuc") and sig["profile_hint"] == "appendix"
    assert sig["modifications"] == {"level": "none", "coverage": "entire_file", "docmdp_ok": True,
                                    "problem": None}
    assert bb.json["kind"] == "pdf" and bb.json["document"]["pages"] == 1
    assert_good(post_pdf(client, world, signed["PDF B-T"]).json, "B-T", "service")
    lta = post_pdf(client, world, signed["PDF B-LTA"]).json
    sig = assert_good(lta, "B-LTA", "embedded")
    assert sig["modifications"]["level"] == "lta_updates" and sig["modifications"]["docmdp_ok"]
    [stamp] = lta["document"]["timestamps"]
    assert stamp["valid"] and stamp["trusted"] and lta["document"]["dss"]


def check_cms(client: Any, world: World, signature: bytes) -> None:
    """The detached CMS: good with its own file (DER or PEM), not intact with another file."""
    good = post_cms(client, world, XML, signature)
    assert good.status_code == 200, good.json
    assert good.json["kind"] == "cms" and good.json["document"]["pages"] is None
    assert assert_good(good.json, "B-T", "service")["field"] is None
    other = post_cms(client, world, XML + b" ", signature).json
    assert not other["summary"]["all_valid"] and not other["signatures"][0]["integrity"]["intact"]
    pem = b"-----BEGIN CMS-----\n" + base64.encodebytes(signature) + b"-----END CMS-----\n"
    assert post_cms(client, world, XML, pem).json["summary"]["all_valid"]


def check_altered(client: Any, world: World, signed: dict[str, bytes]) -> None:
    """Altered after signing: an incremental update changing the page, or a flipped signed byte."""
    changed = post_pdf(client, world, append_page_change(signed["PDF B-T"])).json
    [sig] = changed["signatures"]
    assert sig["integrity"]["intact"] and not sig["ok"] and not changed["summary"]["all_valid"]
    assert sig["modifications"]["level"] == "other" and sig["modifications"]["docmdp_ok"] is False
    assert sig["modifications"]["coverage"] == "entire_revision" and sig["modifications"]["problem"]
    flipped = post_pdf(client, world, flip_signed_byte(signed["PDF B-B"])).json
    [sig] = flipped["signatures"]
    assert not sig["integrity"]["intact"] and sig["level"] is None and not flipped["summary"]["all_valid"]


class _MonthLater(datetime):
    """pyhanko-certvalidator's clock, 30 days on: past the embedded CRLs' nextUpdate (7 days)."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + timedelta(days=30)


def check_month_later(client: Any, services: Services, world: World, token: hsm.Hsm,
                      signed: dict[str, bytes]) -> None:
    """A month on, with fresh service CRLs: the B-LTA document still reaches B-LTA from its own
    data (judged at its signature timestamp); the B-T one is good from the service's CRLs."""
    with services.db.session() as s:
        publish_crls(s, token, now=datetime.now(UTC) + timedelta(days=29))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(certvalidator_context, "datetime", _MonthLater)
        assert_good(post_pdf(client, world, signed["PDF B-LTA"]).json, "B-LTA", "embedded")
        assert_good(post_pdf(client, world, signed["PDF B-T"]).json, "B-T", "service")


def check_revoked(client: Any, services: Services, world: World, token: hsm.Hsm, credential_id: str,
                  pdf: bytes) -> None:
    """Revoked after signing, and a fresh service CRL says so."""
    with services.db.session() as s:
        revoke_credential(s, token, SYSTEM, credential_id, reason="keyCompromise")
    report = post_pdf(client, world, pdf).json
    [sig] = report["signatures"]
    assert sig["revocation"]["status"] == "revoked" and sig["revocation"]["source"] == "service"
    assert sig["revocation"]["revoked_at"] is not None
    assert not sig["trust"]["trusted"] and not report["summary"]["all_valid"]


def test_verify_signed_documents(client: Any, services: Services, world: World, token: hsm.Hsm) -> None:
    sw = make_signing_world(services, world, token, "ec-p256")
    signed = sign_documents(client, services, sw)
    check_levels(client, world, signed)
    check_cms(client, world, signed["XML"])
    check_altered(client, world, signed)
    with services.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "document.verify")
                           .order_by(AuditEvent.seq)).all()
        details = [json.loads(e.detail) for e in events]
    assert len(details) == 8
    assert details[0] == {"sha256": hashlib.sha256(signed["PDF B-B"]).hexdigest(), "kind": "pdf",
                          "signatures": 1, "all_valid": True}
    check_month_later(client, services, world, token, signed)
    check_revoked(client, services, world, token, sw.seal_credential, signed["PDF B-B"])


def test_unsigned_pdf_has_no_signatures(client: Any, world: World) -> None:
    pdf = one_page_pdf()
    data = {"file": (io.BytesIO(pdf), "unsigned.pdf")}
    resp = checked(client.post("/v1/verify", data=data, content_type="multipart/form-data",
                               headers=auth(world)))
    assert resp.status_code == 200, resp.json
    assert resp.json["signatures"] == [] and resp.json["summary"]["all_valid"] is False
    assert resp.json["document"]["pages"] == 1 and len(resp.json["document"]["sha256"]) == 64


def encrypted_pdf() -> bytes:
    writer = PdfFileWriter(stream_xrefs=False)
    writer.insert_page(PageObject(writer.add_object(generic.StreamObject(stream_data=CONTENT)),
                                  (0, 0, 595, 842)))
    writer.encrypt("owner", "user")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("body", [
    pytest.param(lambda: one_page_pdf()[:300], id="truncated"),
    pytest.param(lambda: b"PK\x03\x04 not a pdf", id="not-a-pdf"),
    pytest.param(encrypted_pdf, id="encrypted"),
])
def test_damaged_pdf_is_422(client: Any, world: World, body: Any) -> None:
    resp = post_pdf(client, world, body())
    assert resp.status_code == 422, resp.json
    assert resp.mimetype == "application/problem+json"
    assert resp.json["type"] == "urn:signer:problem:invalid-document"


def test_bad_cms_is_422(client: Any, world: World) -> None:
    for junk in (b"\x30\x03\x02\x01\x01", b"not a signature at all",
                 b"-----BEGIN CMS-----\nAAAA\n-----END CMS-----\n"):
        resp = post_cms(client, world, XML, junk)
        assert resp.status_code == 422, resp.json
        assert resp.json["type"] == "urn:signer:problem:invalid-document"


def test_scope_auth_and_media_type(client: Any, services: Services, world: World) -> None:
    with services.db.session() as s:
        signer_only = directory.create_api_client(s, SYSTEM, name="DMS chỉ ký", organisation_id=world.office,
                                                  scopes={"sign"}).key.token
    headers = {"Authorization": f"Bearer {signer_only}"}
    pdf = one_page_pdf()
    resp = client.post("/v1/verify", data=pdf, content_type="application/pdf", headers=headers)
    assert resp.status_code == 403 and resp.json["type"] == "urn:signer:problem:forbidden"
    assert client.post("/v1/verify", data=pdf, content_type="application/pdf").status_code == 401
    resp = client.post("/v1/verify", data=pdf, content_type="text/plain", headers=auth(world))
    assert resp.status_code == 415
    # A signed-in person needs no scope.
    client.post("/v1/session", json={"username": "office-clerk", "password": world.password})
    assert client.post("/v1/verify", data=pdf, content_type="application/pdf").status_code == 200


def test_size_limit(client: Any, services: Services, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    small = services.settings.model_copy(update={"max_document_bytes": 1024})
    monkeypatch.setattr(services, "settings", small)
    big = one_page_pdf(CONTENT + b" " * 4096)
    resp = post_pdf(client, world, big)
    assert resp.status_code == 413 and resp.json["type"] == "urn:signer:problem:payload-too-large"
    data = {"file": (io.BytesIO(big), "big.pdf")}
    resp = client.post("/v1/verify", data=data, content_type="multipart/form-data", headers=auth(world))
    assert resp.status_code == 413 and resp.json["type"] == "urn:signer:problem:payload-too-large"
