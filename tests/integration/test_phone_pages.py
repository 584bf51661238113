"""The phone web app's pages (server side): sign-in redirect, Vietnamese first with an English
switch, the pending list, a request with page-1 previews and three codes, what the page's script
recomputes, history, the manifest and the live event stream."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import struct
from typing import Any

import pytest

import hsm
from signer import notify
from signer.services import Services
from tests.conftest import World
from tests.pdfs import decision_pdf
from tests.signing_support import SigningWorld, make_signing_world

# Server-rendered phone pages and their event stream: nothing here depends on the database
# backend; the listings behind them are covered on both backends by test_holder_inbox.py.
pytestmark = pytest.mark.one_db


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm, client: Any) -> SigningWorld:
    made = make_signing_world(services, world, token, "ec-p256")
    from tests.images import signature_png

    client.post("/v1/session", json={"username": "office-admin", "password": world.password})
    client.put(f"/v1/credentials/{made.leader_credential}/images/signature", data=signature_png(),
               content_type="image/png")
    client.delete("/v1/session")
    return made


def _request(client: Any, sw: SigningWorld) -> dict[str, Any]:
    docs = [{"name": "Quyết định bổ nhiệm", "format": "pades", "profile": "approved", "level": "B-B",
             "placement": {"anchor": "Nguyễn Văn An"}, "content": base64.b64encode(decision_pdf()).decode()},
            {"name": "Mã băm hợp đồng", "format": "raw", "hash": "ab" * 32}]
    resp = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": docs},
                       headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 202, resp.json
    return dict(resp.json)


def _login(client: Any, world: World, username: str) -> None:
    assert client.post("/v1/session", json={"username": username, "password": world.password}).status_code == 200


def test_login_page_vietnamese_first_with_english(client: Any) -> None:
    home = client.get("/m/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/m/login")
    page = client.get("/m/login").get_data(as_text=True)
    assert 'lang="vi"' in page and "Đăng nhập bằng khóa truy cập" in page
    english = client.get("/m/login?lang=en")
    assert "Sign in with a passkey" in english.get_data(as_text=True)
    assert "signer_lang=en" in english.headers["Set-Cookie"]
    assert "Sign in with a passkey" in client.get("/m/login").get_data(as_text=True)  # remembered
    manifest = client.get("/m/manifest.webmanifest")
    assert manifest.mimetype == "application/manifest+json"
    body = json.loads(manifest.data)
    assert body["display"] == "standalone" and body["start_url"] == "/m/" and body["icons"]
    for asset in (body["icons"][0]["src"], "/m/static/phone.js", "/m/static/phone.css"):
        with client.get(asset) as served:  # static files are streamed from disk: close them
            assert served.status_code == 200


def test_pending_list_and_request_page(client: Any, sw: SigningWorld) -> None:
    req = _request(client, sw)
    _login(client, sw.world, "office-leader")
    listing = client.get("/m/").get_data(as_text=True)
    assert "Quyết định bổ nhiệm" in listing and "+1 văn bản" in listing and "DMS văn phòng" in listing
    page = client.get(f"/m/requests/{req['id']}").get_data(as_text=True)
    codes = re.findall(r'data-code="(\d{4})"', page)
    assert len(codes) == 3 and req["verification_code"] in codes
    # HTML-escaped in the attribute (the browser unescapes it for dataset.approval).
    approval = json.loads(html.unescape(re.search(r"data-approval='([^']+)'", page).group(1)))  # type: ignore[union-attr]
    # What phone.js does: the challenge from what the page shows, compared with the server's.
    shown = json.dumps({"credential": approval["credential"], "dtbsr": approval["dtbsr"],
                        "expires": approval["expires"], "request": approval["request"], "v": approval["version"]},
                       separators=(",", ":"))
    assert hashlib.sha256(shown.encode()).hexdigest() == approval["challenge"] == req["challenge"]
    assert approval["rp_id"] == "localhost" and approval["devices"] == []  # an app key only, no passkey yet

    pdf_doc = req["documents"][0]
    png = client.get(f"/m/requests/{req['id']}/documents/{pdf_doc['id']}/page1.png")
    assert png.mimetype == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png.data[16:24])
    assert width == 720 or height == 720
    full = client.get(f"/m/requests/{req['id']}/documents/{pdf_doc['id']}/document.pdf")
    assert full.mimetype == "application/pdf" and full.data.startswith(b"%PDF")
    hash_doc = req["documents"][1]
    assert client.get(f"/m/requests/{req['id']}/documents/{hash_doc['id']}/page1.png").status_code == 404
    client.delete("/v1/session")

    _login(client, sw.world, "office-clerk")  # not this key's holder
    assert client.get(f"/m/requests/{req['id']}").status_code == 404
    assert client.get(f"/m/requests/{req['id']}/documents/{pdf_doc['id']}/page1.png").status_code == 404
    assert "Không có yêu cầu nào đang chờ." in client.get("/m/").get_data(as_text=True)


def test_history_after_refusing(client: Any, sw: SigningWorld) -> None:
    req = _request(client, sw)
    _login(client, sw.world, "office-leader")
    assert client.post(f"/v1/sign-requests/{req['id']}/refusal", json={"reason": "Sai chức danh"}).status_code == 200
    page = client.get("/m/history").get_data(as_text=True)
    assert "Từ chối" in page and "Quyết định bổ nhiệm" in page
    assert "Refused" in client.get("/m/history?lang=en").get_data(as_text=True)


def test_live_events_reach_the_holder_page(client: Any, services: Services, sw: SigningWorld) -> None:
    _login(client, sw.world, "office-leader")
    resp = client.get("/m/events", buffered=False)
    assert resp.mimetype == "text/event-stream"
    chunks = iter(resp.response)
    assert next(chunks).startswith(b"retry:")
    notify.LiveChannel(services).notify(notify.Notification(
        "sign_request.pending", "req-1", sw.leader.user_id, "office-leader", 1, "2026-11-21T10:00:00+00:00",
        "AWAITING_APPROVAL"))
    event = next(chunks)
    while event.startswith(b":"):  # keep-alive comments
        event = next(chunks)
    assert event.startswith(b"event: request") and b'"request_id": "req-1"' in event
    resp.close()
    client.delete("/v1/session")
    assert client.get("/m/events").status_code == 401


def test_enrolment_link_opens_the_enrol_page(client: Any, world: World) -> None:
    client.post("/v1/session", json={"username": "office-ra", "password": world.password})
    made = client.post("/v1/admin/enrolments", json={"user_id": world.users["office-leader"], "kind": "webauthn"})
    client.delete("/v1/session")
    assert made.status_code == 201
    assert made.json["url"] == f"http://localhost:8000/m/enrol/{made.json['token']}"  # WebAuthn needs a name
    # The QR code an admin shows the person carries exactly that URL (segno's encoding is deterministic).
    import segno

    assert made.json["qr_svg"].startswith("<svg")
    assert made.json["qr_svg"] == segno.make(made.json["url"], error="m").svg_inline(scale=4, dark="#000",
                                                                                     light="#fff")
    page = client.get(f"/m/enrol/{made.json['token']}").get_data(as_text=True)
    assert "Office Leader" in page and f'data-passkey-enrol="{made.json["token"]}"' in page
    gone = client.get("/m/enrol/enr_not-a-real-link")
    assert gone.status_code == 404 and "Liên kết không còn hiệu lực." in gone.get_data(as_text=True)
