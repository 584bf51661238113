"""``signer demo exchange``: the exchange story against a running service (``signer run``), over HTTP.

The demo document system (its API key) has a generated one-page decision signed by the leader
(profile ``approved``, the leader's reference phone approves) and then sealed by the organisation
(profile ``issued``, the clerk's phone approves), sends it over the axis to the partner organisation,
whose clerk (signed in with a password) finds it with its verification report and answers 03; the
sender then sees 01 and 03 for that recipient. Every step is printed in Vietnamese, then English.

Needs the data of ``signer demo`` (secrets and phones under ``state/``). The phones' approvals reuse
:mod:`signer.phone` in-process: the challenge is recomputed and the code must be among the choices.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from signer.demo import CLERK, LEADER, LEADER_CREDENTIAL, PARTNER_CLERK, PARTNER_CODE, PEOPLE
from signer.phone import Api, Home, _checked_challenge

T = TypeVar("T")
FINAL = {"COMPLETED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"}
VERDICTS = {"valid": "hợp lệ", "indeterminate": "chưa xác định được", "invalid": "không hợp lệ"}
# Between "CHỦ TỊCH" (baseline 250) and the leader's name (baseline 160) of the generated decision.
SIGNATURE_BOX = [350.0, 176.0, 530.0, 242.0]


class DemoError(click.ClickException):
    """A one-line failure: click prints it and exits with status 1."""


def say(vi: str, en: str) -> None:
    click.echo(f"{vi} ({en})")


class Dms:
    """The demo document system: JSON over HTTP with its API key."""

    def __init__(self, base: str, key: str) -> None:
        if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
            raise DemoError(f"the service URL must be http(s), not {base!r}")
        self.base, self.key = base.rstrip("/"), key

    def raw(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0) -> bytes:
        req = urllib.request.Request(self.base + path, method=method,  # noqa: S310 - http(s) checked above
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", f"Bearer {self.key}")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - http(s) checked above
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            try:
                problem = json.loads(exc.read())
                why = (f"{problem.get('detail') or problem.get('title')} ({problem.get('type')}) "
                       f"{problem.get('errors') or ''}")
            except ValueError:
                why = str(exc.reason)
            raise DemoError(f"{method} {path}: HTTP {exc.code}: {why.strip()}") from None
        except OSError as exc:
            raise DemoError(f"cannot reach {self.base} (is `signer run` up?): {exc}") from None

    def call(self, method: str, path: str, body: Any = None, timeout_s: float = 30.0) -> Any:
        return json.loads(self.raw(method, path, body, timeout_s))


def until(what: str, timeout_s: float, probe: Callable[[], T | None], every_s: float = 0.5) -> T:
    """``probe()`` until it returns something; a clear failure after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise DemoError(f"hết thời gian chờ: {what} (timed out after {timeout_s:g} s waiting: {what})")
        time.sleep(every_s)


def decision_pdf(number: str) -> bytes:
    """A one-page Vietnamese decision (Liberation Serif, extractable text) with room for the signature."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

    from signer.signing.appearance import serif_font

    lines = [("ỦY BAN NHÂN DÂN TỈNH (MẪU)", 150, 760, 12), ("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 420, 760, 12),
             ("Độc lập - Tự do - Hạnh phúc", 420, 744, 12), (f"Số: {number}/QĐ-UBND", 150, 720, 12),
             ("QUYẾT ĐỊNH", 297, 670, 15), ("Về việc ban hành quy chế trao đổi văn bản điện tử", 297, 650, 13),
             ("Điều 1. Ban hành kèm theo Quyết định này quy chế trao đổi văn bản điện tử.", 297, 600, 12),
             ("Điều 2. Quyết định này có hiệu lực kể từ ngày ký.", 297, 580, 12),
             ("CHỦ TỊCH", 440, 250, 13), (PEOPLE[LEADER][0], 440, 160, 13)]
    writer = PdfFileWriter(stream_xrefs=False)
    engine = serif_font(13).create_font_engine(writer)
    ops = []
    for text, centre_x, y, size in lines:
        engine.font_size = size
        shaped = engine.shape(text, with_actual_text=False)
        x = centre_x - shaped.x_advance * size / 2
        ops.append(b"BT /F1 %d Tf %g %g Td %s ET" % (size, x, y, shaped.graphics_ops))
    resources = generic.DictionaryObject({generic.pdf_name("/Font"): generic.DictionaryObject(
        {generic.pdf_name("/F1"): engine.as_resource()})})
    stream = writer.add_object(generic.StreamObject(stream_data=b"\n".join(ops)))
    writer.insert_page(PageObject(stream, (0, 0, 595.28, 841.89), resources=resources))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _first_line(path: Path) -> str:
    try:
        return path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        raise DemoError(f"{path} is missing or empty: run `signer demo` first") from None


def sign_in(base: str, username: str, secrets_dir: Path) -> Api:
    api = Api(base)
    password = _first_line(secrets_dir / f"{username}-password")
    api.call("POST", "/v1/session", {"username": username, "password": password})
    return api


def approve_on_phone(base: str, home_dir: Path, secrets_dir: Path, request_id: str, code: str) -> str:
    """What ``signer phone approve`` does, in-process: the holder's session, the recomputed challenge,
    the code among the three choices, the app key's signature and the PIN. Returns the new state."""
    home = Home(home_dir)
    profile = home.profile()
    api = sign_in(base, profile["username"], secrets_dir)
    view = api.call("GET", f"/v1/sign-requests/{request_id}")
    if view["state"] != "AWAITING_APPROVAL":
        raise DemoError(f"request {request_id} is {view['state']}, not awaiting approval")
    challenge = _checked_challenge(view)
    if code not in (view["code_choices"] or []):
        raise DemoError(f"code {code} is not among the phone's choices {view['code_choices']}")
    out = api.call("POST", f"/v1/sign-requests/{request_id}/approval", {
        "device_id": profile["device_id"], "challenge": challenge.hex(), "verification_code": code,
        "signature": base64.b64encode(home.key().sign(challenge, ec.ECDSA(hashes.SHA256()))).decode(),
        "pin": _first_line(secrets_dir / "demo-pin")})
    api.call("DELETE", "/v1/session")
    return str(out["state"])


def signed(dms: Dms, base: str, state_dir: Path, holder: str, credential: str, document: dict[str, Any],
           timeout_s: float) -> tuple[str, bytes]:
    """Ask, approve on ``holder``'s phone, wait for COMPLETED; returns (request id, signed PDF)."""
    req = dms.call("POST", "/v1/sign-requests", {"credential_id": credential, "documents": [document]})
    say(f"   yêu cầu {req['id']}, mã xác nhận {req['verification_code']}",
        f"request {req['id']}, verification code {req['verification_code']}")
    state = approve_on_phone(base, state_dir / "demo" / f"phone-{holder}", state_dir / "secrets", req["id"],
                             req["verification_code"])
    say(f"   điện thoại của {PEOPLE[holder][0]} đã phê duyệt: {state}",
        f"{holder}'s reference phone approved: {state}")
    deadline = time.monotonic() + timeout_s
    view = req
    while view["state"] not in FINAL:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DemoError(f"hết thời gian chờ ký (timed out after {timeout_s:g} s: request {req['id']} is "
                            f"{view['state']}; are the hsm workers up?)")
        wait = max(1, min(20, int(left)))
        view = dms.call("GET", f"/v1/sign-requests/{req['id']}?wait={wait}", timeout_s=wait + 15)
    if view["state"] != "COMPLETED":
        raise DemoError(f"request {req['id']} ended {view['state']} ({view['result']}): {view.get('reason')}")
    say(f"   đã ký xong: {view['state']}", f"signed: {view['state']}")
    return str(req["id"]), dms.raw("GET", view["documents"][0]["signed_url"])


def _credentials(dms: Dms) -> tuple[str, str]:
    items = dms.call("GET", "/v1/credentials")["items"]
    leader = [c["id"] for c in items if c["kind"] == "personal" and c["name"] == LEADER_CREDENTIAL]
    seal = [c["id"] for c in items if c["kind"] == "organisation" and c["name"].endswith("(demo)")
            and c["status"] == "active"]
    if not leader or not seal:
        raise DemoError("the demo credentials are missing: run `signer demo` first")
    return leader[0], seal[0]


def _ensure_recipient(dms: Dms, partner_code: str, sync_directory: Callable[[], object] | None) -> None:
    def listed() -> bool:
        return partner_code in {u["code"] for u in dms.call("GET", "/v1/exchange/directory")["items"]}

    if not listed() and sync_directory is not None:
        sync_directory()
    if not listed():
        raise DemoError(f"{partner_code} is not in the axis directory: is it registered (`signer demo`, "
                        "`signer axis register`) and the local axis up? Then `signer axis sync`.")


def _recipient(dms: Dms, outgoing_id: str) -> dict[str, Any]:
    item: dict[str, Any] = dms.call("GET", f"/v1/exchange/outgoing/{outgoing_id}")["recipients"][0]
    if item["state"] == "dead" or item["status"] == "02":
        raise DemoError(f"delivery to {item['recipient']} failed: state {item['state']}, status {item['status']}, "
                        f"{item['last_error'] or (item['history'][-1]['description'] if item['history'] else '')}")
    return item


def run(base: str, state_dir: Path, *, partner_code: str = PARTNER_CODE, timeout_s: float = 90.0,
        sync_directory: Callable[[], object] | None = None) -> dict[str, Any]:
    """Walk the story; returns the outgoing and incoming ids, the report and the sender's history."""
    base = base.rstrip("/")
    dms = Dms(base, _first_line(state_dir / "secrets" / "demo-api-key"))
    leader_credential, seal_credential = _credentials(dms)
    _ensure_recipient(dms, partner_code, sync_directory)  # before anything is signed
    number = str(int(time.time()) % 100000)  # a new DocumentId on every run
    name = f"Quyết định {number}/QĐ-UBND.pdf"

    say("1. Hệ thống quản lý văn bản (khóa API) đề nghị lãnh đạo ký duyệt một quyết định 1 trang",
        "the document system, with its API key, asks the leader to sign a 1-page decision: profile approved")
    first, pdf = signed(dms, base, state_dir, LEADER, leader_credential, {
        "name": name, "format": "pades", "profile": "approved", "level": "B-T",
        "placement": {"page": 1, "box": SIGNATURE_BOX},
        "content": base64.b64encode(decision_pdf(number)).decode()}, timeout_s)

    say("2. Hệ thống quản lý văn bản đề nghị ký số của cơ quan (đóng dấu) lên bản đã ký",
        "the document system asks for the organisation's seal on the signed PDF: profile issued")
    second, _ = signed(dms, base, state_dir, CLERK, seal_credential, {
        "name": name, "format": "pades", "profile": "issued", "level": "B-T",
        "content": base64.b64encode(pdf).decode()}, timeout_s)

    say(f"3. Gửi văn bản tới {partner_code} qua trục liên thông", f"send it to {partner_code} over the axis")
    sent = dms.call("POST", "/v1/exchange/outgoing", {
        "sign_request_id": second, "recipients": [partner_code],
        "code": {"number": number, "notation": "QĐ-UBND"}, "document_type": {"type": 1, "name": "Quyết định"},
        "subject": "Về việc ban hành quy chế trao đổi văn bản điện tử",
        "signer": {"competence": "TM. ỦY BAN NHÂN DÂN", "position": "Chủ tịch", "full_name": PEOPLE[LEADER][0]},
        "place": "Tây Ninh", "to_places": [partner_code, "Lưu: VT"]})
    say(f"   văn bản đi {sent['id']}, mã văn bản {sent['document_id']}",
        f"outgoing {sent['id']}, DocumentId {sent['document_id']}")

    say(f"4. Văn thư của {partner_code} đăng nhập và chờ văn bản đến",
        f"the clerk of {partner_code} signs in and waits for the document")
    clerk = sign_in(base, PARTNER_CLERK, state_dir / "secrets")

    def arrived() -> dict[str, Any] | None:
        found = [i for i in clerk.call("GET", "/v1/exchange/incoming")["items"]
                 if i["document_id"] == sent["document_id"]]
        if not found:
            _recipient(dms, sent["id"])  # fails early on a dead delivery
            return None
        full: dict[str, Any] = clerk.call("GET", f"/v1/exchange/incoming/{found[0]['id']}")
        return full

    incoming = until(f"{sent['document_id']} at {partner_code}", timeout_s, arrived)
    verdict = incoming["verdict"]
    say(f"   đã nhận {incoming['code']} từ {incoming['sender']}: kết quả kiểm tra {VERDICTS.get(verdict, verdict)}",
        f"received {incoming['code']} from {incoming['sender']}: verdict {verdict}")
    for f in incoming["verification"]["files"]:
        for sig in f.get("signatures", []):
            who, kind = (sig.get("signer") or {}).get("common_name"), sig["profile_hint"]
            say(f"   - {f['name']}: chữ ký {kind} của {who}: {'hợp lệ' if sig['ok'] else 'KHÔNG hợp lệ'}",
                f"{kind} signature by {who}: {'valid' if sig['ok'] else 'NOT valid'}")

    if incoming["state"] != "received":
        raise DemoError(f"the document arrived {incoming['state']} ({verdict}), not received: "
                        f"{incoming['status_code']} {incoming['verification']}")
    say("5. Văn thư trả lời 03 (đã tiếp nhận)", "the clerk answers 03: accepted")
    answered = clerk.call("POST", f"/v1/exchange/incoming/{incoming['id']}/status",
                          {"code": "03", "description": "Đã tiếp nhận, vào sổ văn bản đến"})
    say(f"   trạng thái văn bản đến: {answered['state']}", f"incoming state: {answered['state']}")
    clerk.call("DELETE", "/v1/session")

    say("6. Chờ bên gửi nhận các trạng thái 01 và 03", "wait until the sender sees statuses 01 and 03")

    def answered_back() -> dict[str, Any] | None:
        item = _recipient(dms, sent["id"])
        return item if {"01", "03"} <= {h["code"] for h in item["history"]} else None

    item = until(f"statuses 01 and 03 from {partner_code}", timeout_s, answered_back)
    say(f"   bên gửi thấy: {item['recipient']} {item['state']}, trạng thái mới nhất {item['status']}",
        f"the sender's view: {item['recipient']} {item['state']}, latest status {item['status']}")
    for h in item["history"]:
        click.echo(f"   {h['at']}  {h['code']}  {h['description']}")
    return {"outgoing_id": sent["id"], "document_id": sent["document_id"], "incoming": incoming,
            "history": [h["code"] for h in item["history"]], "sign_requests": [first, second]}
