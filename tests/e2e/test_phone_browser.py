"""The phone web app (/m/) in a real headless Chromium at 360x740 with a virtual WebAuthn
authenticator: enrol a passkey, sign in with it, approve one document and a batch of 20, refuse one,
pick a wrong verification code (WRONG_VC), let one expire (TIMEOUT). Nothing signs without the
browser's approval. Screenshots of the pending list and of the verification step are kept under
test-artifacts/phone/.

The server listens on 127.0.0.1 and the browser opens http://localhost:PORT: WebAuthn refuses IP
addresses as relying-party ids, and public_url is http://localhost:PORT so the RP id is "localhost"
and the expected origin is the browser's. scripts/test.sh installs Chromium (Debian's package) and
playwright; without them these tests fail, they are never skipped.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from werkzeug.serving import ThreadedWSGIServer

import hsm
from signer.services import Services
from signer.settings import Settings
from signer.signing.material import trust_roots
from signer.signing.models import SignRequest
from signer.signing.sweeper import expire_requests
from signer.web import i18n
from signer.web import phone as phone_pages
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.images import signature_png
from tests.pdfs import decision_pdf
from tests.signing_support import SigningWorld, make_signing_world
from tests.support import REPO, free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

# The browser side of the phone app; the server-side request states it drives are covered on both
# backends by tests/integration/test_sign_requests.py and test_sweeper.py.
pytestmark = pytest.mark.one_db

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "test-artifacts" / "phone"
VIEWPORT: ViewportSize = {"width": 360, "height": 740}
WAIT_MS = 20_000  # any single browser step; a stuck page fails instead of hanging the suite


T = TypeVar("T")


def vi(key: str) -> str:
    return i18n.t(key, "vi")


def off_loop(work: Callable[[], T]) -> T:
    """Run ``work`` in this thread as if no event loop were running.

    Playwright's sync API leaves its asyncio loop marked as running in the test's thread (suspended
    in a greenlet) while the test runs, and pyHanko (preparing, signing, validating PDFs) calls
    asyncio.run(), which refuses to start inside a running loop. The hsm worker must stay in the
    main thread (rq installs signal handlers), so the mark is lifted here instead of moving work to
    another thread; the browser's loop does not run meanwhile and is put back afterwards.
    """
    browser_loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        return work()
    finally:
        asyncio._set_running_loop(browser_loop)


# -- the served app ------------------------------------------------------------------------------


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(settings: Settings, port: int) -> Settings:
    # The conftest's settings (this test's database, Redis, SoftHSM), seen from the browser's origin.
    return settings.model_copy(update={"public_url": f"http://localhost:{port}"})


@pytest.fixture
def server(app: Any, port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The app over real HTTP on 127.0.0.1; the URL the browser opens (localhost)."""
    # The pending list keeps a live event stream open; a short stream lets the server's handler
    # threads end (and be joined) soon after the browser closes. The browser reconnects meanwhile.
    monkeypatch.setattr(phone_pages, "EVENTS_MAX_S", 1)
    httpd = ThreadedWSGIServer("127.0.0.1", port, app)
    httpd.daemon_threads = False  # server_close() joins the handler threads
    thread = threading.Thread(target=httpd.serve_forever, name="phone-http", daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test.sh (it installs Debian's chromium package)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run scripts/test.sh (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield browser
        finally:
            browser.close()


# -- the world -----------------------------------------------------------------------------------


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm, client: Any) -> SigningWorld:
    made = make_signing_world(services, world, token, "ec-p256")
    with signed_in(client, world, "office-admin"):
        resp = client.put(f"/v1/credentials/{made.leader_credential}/images/signature", data=signature_png(),
                          content_type="image/png")
        assert resp.status_code == 200, resp.json
    return made


@contextmanager
def signed_in(client: Any, world: World, username: str) -> Iterator[None]:
    """Someone at a desk, through the API (the test client, not the browser)."""
    resp = client.post("/v1/session", json={"username": username, "password": world.password})
    assert resp.status_code == 200, resp.json
    try:
        yield
    finally:
        client.delete("/v1/session")


def _pdf(name: str) -> dict[str, Any]:
    return {"name": name, "format": "pades", "profile": "approved", "level": "B-B",
            "placement": {"anchor": "Nguyễn Văn An"}, "content": base64.b64encode(decision_pdf()).decode()}


def new_request(client: Any, sw: SigningWorld, docs: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """What the document system sends (it alone sees the verification code)."""
    resp = off_loop(lambda: client.post(
        "/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": docs, **extra},
        headers={"Authorization": f"Bearer {sw.world.api_key}"}))
    assert resp.status_code == 202, resp.json
    assert resp.json["state"] == "AWAITING_APPROVAL" and resp.json["verification_code"], resp.json
    return dict(resp.json)


def state(client: Any, sw: SigningWorld, req: dict[str, Any]) -> dict[str, Any]:
    resp = client.get(f"/v1/sign-requests/{req['id']}", headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 200, resp.json
    return dict(resp.json)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


# -- the phone -----------------------------------------------------------------------------------


@dataclass
class Phone:
    """One Chromium tab at 360x740 with a virtual platform authenticator (user verification on)."""

    page: Page
    base: str
    console: list[str] = field(default_factory=list)  # console errors and uncaught page errors
    last_status: int = 0  # of the last approval POST

    def log(self) -> str:
        return "\n".join(self.console) or "(no console errors)"

    def open(self, path: str) -> None:
        resp = self.page.goto(self.base + path)
        assert resp is not None and resp.status == 200, (path, resp and resp.status, self.log())

    def result(self, selector: str) -> str:
        """The text a page script shows once it is done (the element stops being hidden)."""
        element = self.page.locator(selector)
        try:
            element.wait_for(state="visible")
        except Exception as exc:  # a Playwright timeout: say what the page logged
            raise AssertionError(f"{selector} never showed on {self.page.url}: {exc}\n{self.log()}") from None
        return element.inner_text().strip()

    def decide(self, code: str) -> str:
        """Pick a verification code on the request page: the passkey approves, the page answers."""
        with self.page.expect_response(lambda r: r.url.endswith("/approval")) as answer:
            self.page.locator(f'button.code[data-code="{code}"]').click()
        text = self.result("[data-result]")
        self.last_status = answer.value.status
        return text


def _enrol_and_sign_in(phone: Phone, client: Any, world: World) -> None:
    """Enrolment link (RA officer) -> passkey on this phone -> admin approves -> passkey sign-in."""
    with signed_in(client, world, "office-ra"):
        made = client.post("/v1/admin/enrolments", json={"user_id": world.users["office-leader"], "kind": "webauthn"})
    assert made.status_code == 201, made.json
    assert made.json["url"].startswith(phone.base + "/m/enrol/"), made.json
    phone.open(made.json["url"].removeprefix(phone.base))
    phone.page.locator("[data-passkey-enrol]").click()
    assert phone.result("[data-enrolled]") == vi("enrolled"), phone.log()

    # Until an admin approves the new passkey, it opens nothing.
    phone.open("/m/login")
    with phone.page.expect_response(lambda r: r.url.endswith("/v1/session/passkey")) as refused:
        phone.page.locator("[data-passkey-login]").click()
    assert refused.value.status == 401, refused.value.text()
    assert phone.result("[data-error]") == vi("login_failed")
    assert phone.console == ["console.error: Failed to load resource: the server responded with a status of "
                             "401 (UNAUTHORIZED)"], phone.log()
    phone.console.clear()

    with signed_in(client, world, "office-admin"):
        pending = client.get("/v1/devices?status=pending").json["items"]
        passkeys = [d for d in pending if d["kind"] == "webauthn" and d["user_id"] == world.users["office-leader"]]
        assert len(passkeys) == 1, pending
        approved = client.post(f"/v1/devices/{passkeys[0]['id']}/approve")
        assert approved.status_code == 200 and approved.json["status"] == "active", approved.json

    phone.open("/m/")
    assert phone.page.url == phone.base + "/m/login"  # not signed in yet
    with phone.page.expect_navigation(url=phone.base + "/m/"):
        phone.page.locator("[data-passkey-login]").click()
    assert phone.page.locator("h1").inner_text() == vi("pending"), phone.log()


@pytest.fixture
def phone(sw: SigningWorld, server: str, client: Any, browser: Browser) -> Iterator[Phone]:
    """The leader's phone, passkey enrolled, approved by an admin, signed in at /m/."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, is_mobile=True, has_touch=True,
                                  locale="vi-VN")
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    made = Phone(page, server)
    page.on("console", lambda m: made.console.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: made.console.append(f"pageerror: {e}"))
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})
    try:
        _enrol_and_sign_in(made, client, sw.world)
        yield made
    finally:
        context.close()


# -- the tests -----------------------------------------------------------------------------------


def test_one_document_approved_on_the_phone_signs_and_validates(phone: Phone, client: Any, services: Services,
                                                                sw: SigningWorld) -> None:
    req = new_request(client, sw, [_pdf("Quyết định bổ nhiệm")])
    untouched = new_request(client, sw, [_pdf("Quyết định chưa duyệt")])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    phone.open("/m/")
    listing = phone.page.locator("ul.requests > li")
    assert listing.count() == 2, phone.page.content()
    shown = phone.page.locator("ul.requests").inner_text()
    assert "Quyết định bổ nhiệm" in shown and "Quyết định chưa duyệt" in shown and "DMS văn phòng" in shown
    phone.page.screenshot(path=str(ARTIFACTS / "pending-list.png"))
    assert png_size(ARTIFACTS / "pending-list.png") == (360, 740)

    phone.page.locator(f'a[href="/m/requests/{req["id"]}"]').click()
    phone.page.wait_for_url(f"{phone.base}/m/requests/{req['id']}")
    codes = phone.page.locator("button.code[data-code]")
    choices = [codes.nth(i).get_attribute("data-code") for i in range(codes.count())]
    assert len(choices) == 3 and req["verification_code"] in choices, choices
    phone.page.locator("section.decide").scroll_into_view_if_needed()
    phone.page.locator("ol.documents img").first.evaluate("img => img.decode()")  # page 1 is drawn
    phone.page.screenshot(path=str(ARTIFACTS / "verification-step.png"))
    assert png_size(ARTIFACTS / "verification-step.png") == (360, 740)

    assert phone.decide(req["verification_code"]) == vi("approved"), phone.log()
    assert phone.last_status == 202
    assert state(client, sw, req)["state"] == "SIGNING"  # the hsm worker signs, not the web tier

    off_loop(lambda: run_hsm_worker(services, burst=True))
    done = state(client, sw, req)
    assert done["state"] == "COMPLETED" and done["documents"][0]["state"] == "COMPLETED", done
    pdf = client.get(done["documents"][0]["signed_url"], headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert pdf.status_code == 200
    with services.db.session() as s:
        roots = trust_roots(s)
    signatures = PdfFileReader(io.BytesIO(pdf.data)).embedded_signatures
    assert len(signatures) == 1
    status = off_loop(lambda: validate_pdf_signature(signatures[0],
                                                     ValidationContext(trust_roots=roots, allow_fetching=False)))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()

    # The request nobody approved: the worker ran, nothing signed it, it still waits on the phone.
    left = state(client, sw, untouched)
    assert left["state"] == "AWAITING_APPROVAL" and left["documents"][0]["signed_url"] is None, left
    phone.open("/m/")
    assert phone.page.locator(f'a[href="/m/requests/{untouched["id"]}"]').count() == 1
    assert phone.page.locator(f'a[href="/m/requests/{req["id"]}"]').count() == 0
    assert phone.console == [], phone.log()


def test_a_batch_of_twenty_is_approved_once(phone: Phone, client: Any, services: Services, sw: SigningWorld) -> None:
    req = new_request(client, sw, [_pdf(f"Quyết định số {n:02d}") for n in range(1, 21)])
    phone.open("/m/")
    assert "+19" in phone.page.locator(f'a[href="/m/requests/{req["id"]}"]').inner_text()
    phone.open(f"/m/requests/{req['id']}")
    assert phone.page.locator("ol.documents > li").count() == 20
    assert phone.decide(req["verification_code"]) == vi("approved"), phone.log()

    off_loop(lambda: run_hsm_worker(services, burst=True))
    done = state(client, sw, req)
    assert done["state"] == "COMPLETED", done
    assert [d["state"] for d in done["documents"]] == ["COMPLETED"] * 20
    assert all(d["signed_url"] for d in done["documents"])
    assert phone.console == [], phone.log()


def test_refuse_wrong_code_and_expiry(phone: Phone, client: Any, services: Services, sw: SigningWorld) -> None:
    refused = new_request(client, sw, [_pdf("Quyết định bị từ chối")])
    wrong = new_request(client, sw, [_pdf("Quyết định chọn sai mã")])
    late = new_request(client, sw, [_pdf("Quyết định hết hạn")], expires_in=30)

    # Refuse, with a reason.
    phone.open(f"/m/requests/{refused['id']}")
    phone.page.locator("form[data-refuse] input[name=reason]").fill("Sai chức danh người ký")
    with phone.page.expect_response(lambda r: r.url.endswith("/refusal")) as answer:
        phone.page.locator("form[data-refuse] button[type=submit]").click()
    assert answer.value.status == 200
    assert phone.result("[data-result]") == vi("refused"), phone.log()
    final = state(client, sw, refused)
    assert (final["state"], final["result"], final["detail"]) == ("REJECTED", "USER_REFUSED",
                                                                  "Sai chức danh người ký"), final

    # A code that is not the document system's: the passkey signs the challenge, the request ends.
    phone.open(f"/m/requests/{wrong['id']}")
    codes = phone.page.locator("button.code[data-code]")
    choices = [str(codes.nth(i).get_attribute("data-code")) for i in range(codes.count())]
    other = next(c for c in choices if c != wrong["verification_code"])
    text = phone.decide(other)
    assert text.startswith(vi("failed")) and "WRONG_VC" in text, (text, phone.log())
    final = state(client, sw, wrong)
    assert (final["state"], final["result"]) == ("REJECTED", "WRONG_VC"), final

    # Too late: the holder had the page open, the sweeper ended the request, approving fails.
    phone.open(f"/m/requests/{late['id']}")
    with services.db.session() as s:
        row = s.get(SignRequest, late["id"])
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert expire_requests(services) == [late["id"]]
    text = phone.decide(late["verification_code"])
    assert text.startswith(vi("failed")) and phone.last_status == 409, (text, phone.log())
    final = state(client, sw, late)
    assert (final["state"], final["result"]) == ("EXPIRED", "TIMEOUT"), final
    phone.open(f"/m/requests/{late['id']}")
    assert phone.page.locator("button.code").count() == 0  # nothing left to decide

    off_loop(lambda: run_hsm_worker(services, burst=True))  # none of the three signs anything
    for req in (refused, wrong, late):
        assert all(d["signed_url"] is None for d in state(client, sw, req)["documents"])
    phone.open("/m/")
    assert phone.page.locator("ul.requests li.empty").inner_text() == vi("none_pending")
    # The only error the browser saw: the approval the server refused once the request had expired.
    assert phone.console == ["console.error: Failed to load resource: the server responded with a status of "
                             "409 (CONFLICT)"], phone.log()
