"""``/m/``: the key holder's phone web app. Server-rendered, Vietnamese first; the only script is
what WebAuthn needs (sign in with a passkey, approve with it) plus a live-update listener.

The page never trusts the server for what it signs: the script recomputes the challenge from the
request id, credential, expiry and DTBS/R list it shows, exactly like ``signer.signing.challenge``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    g,
    make_response,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from redis.exceptions import RedisError
from sqlalchemy import select

from signer import notify
from signer.devices import passkeys
from signer.errors import NotFound
from signer.http.auth import current_principal, services
from signer.models import ApiClient, User
from signer.principal import ANONYMOUS, Principal
from signer.signing import challenge as chal
from signer.signing import inbox
from signer.signing import requests as workflow
from signer.signing.models import Device, DeviceKind, DeviceStatus, DocKind, SignRequest
from signer.web import i18n
from signer.web.preview import PreviewUnavailable, first_page_png

bp = Blueprint("phone", __name__, url_prefix="/m", template_folder="templates", static_folder="static/phone",
               static_url_path="/static")
EVENTS_MAX_S = 300  # a stream ends itself; the browser reconnects (gunicorn threads stay free)


@bp.context_processor
def _words() -> dict[str, Any]:
    lang = i18n.language()
    return {"t": lambda key: i18n.t(key, lang), "lang": lang, "other_lang": "en" if lang == "vi" else "vi"}


@bp.after_request
def _remember_language(response: Response) -> Response:
    wanted = request.args.get("lang")
    if wanted in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, wanted, max_age=365 * 86400, samesite="Lax")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _user() -> User | None:
    principal: Principal = g.get("principal", ANONYMOUS)  # pages redirect instead of answering 401
    if principal.kind != "user":
        return None
    with services().db.session(readonly=True) as db:
        return db.get(User, principal.id)


def _requesters(db: Any, requests: list[SignRequest]) -> dict[str, str]:
    """Document systems' names by id (which system asks is part of what the holder decides on)."""
    ids = {r.api_client_id for r in requests}
    if not ids:
        return {}
    rows = db.execute(select(ApiClient.id, ApiClient.name).where(ApiClient.id.in_(ids))).all()
    return dict(rows)  # Row objects unpack as (id, name)


def _remaining(req: SignRequest) -> int:
    expires = req.expires_at if req.expires_at.tzinfo else req.expires_at.replace(tzinfo=UTC)
    return max(0, int((expires - datetime.now(UTC)).total_seconds()))


@bp.get("/")
def home() -> ResponseReturnValue:
    user = _user()
    if user is None:
        return redirect(url_for("phone.login"))
    with services().db.session(readonly=True) as db:
        pending = inbox.pending_for(db, user)
        return render_template("phone/pending.html", user=user, items=pending, remaining=_remaining,
                               requesters=_requesters(db, pending))


@bp.get("/login")
def login() -> ResponseReturnValue:
    return render_template("phone/login.html")


@bp.get("/enrol/<token>")
def enrol(token: str) -> ResponseReturnValue:
    """The page an enrolment link (or its QR code) opens: create a passkey on this phone."""
    from signer.devices import enrolment

    with services().db.session(readonly=True) as db:
        try:
            _, holder = enrolment.open_link(db, token)
        except NotFound:
            return render_template("phone/message.html", message=i18n.t("link_invalid")), 404
        return render_template("phone/enrol.html", token=token, holder=holder.full_name)


@bp.get("/history")
def history() -> ResponseReturnValue:
    user = _user()
    if user is None:
        return redirect(url_for("phone.login"))
    with services().db.session(readonly=True) as db:
        return render_template("phone/history.html", user=user, items=inbox.decisions_of(db, user))


def _passkeys(db: Any, user: User) -> list[dict[str, str]]:
    devices = db.scalars(select(Device).where(Device.user_id == user.id, Device.kind == DeviceKind.PASSKEY.value,
                                              Device.status == DeviceStatus.ACTIVE.value))
    return [{"id": d.id, "credential_id": d.credential_id} for d in devices]


@bp.get("/requests/<request_id>")
def detail(request_id: str) -> ResponseReturnValue:
    user = _user()
    if user is None:
        return redirect(url_for("phone.login"))
    svc = services()
    with svc.db.session(readonly=True) as db:
        req = workflow.get_for(db, current_principal(), request_id)
        if not workflow.may_approve(db, user, req.credential):
            raise NotFound("sign request not found")
        docs = sorted(req.documents, key=lambda d: d.position)
        approval = {
            "request": req.id, "credential": req.credential_id,
            "expires": chal.iso_utc(req.expires_at),
            "dtbsr": [d.dtbsr for d in docs], "challenge": req.challenge, "version": chal.VERSION,
            "rp_id": passkeys.RelyingParty.from_public_url(svc.settings.public_url).id,
            "devices": _passkeys(db, user),
        }
        choices = chal.code_choices(bytes.fromhex(req.challenge))
        return render_template("phone/detail.html", user=user, req=req, docs=docs, remaining=_remaining(req),
                               choices=choices, approval=json.dumps(approval),
                               requester=_requesters(db, [req]).get(req.api_client_id, ""))


def _document(request_id: str, doc_id: str) -> tuple[bytes, str]:
    user = _user()
    if user is None:
        raise NotFound("sign request not found")
    svc = services()
    with svc.db.session(readonly=True) as db:
        req = workflow.get_for(db, current_principal(), request_id)
        doc = next((d for d in req.documents if d.id == doc_id), None)
        if doc is None or not workflow.may_approve(db, user, req.credential) or doc.kind != DocKind.PDF.value \
                or doc.prepared_blob is None:
            raise NotFound("document not found")
        return svc.blobs.get(doc.prepared_blob), f"{doc.position + 1:03d}.pdf"


@bp.get("/requests/<request_id>/documents/<doc_id>/page1.png")
def preview(request_id: str, doc_id: str) -> ResponseReturnValue:
    """Page 1 as it will look once signed (the prepared PDF holds the appearance)."""
    pdf, _ = _document(request_id, doc_id)
    try:
        png = first_page_png(pdf)
    except PreviewUnavailable:
        raise NotFound("no preview for this document") from None
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=300"})


@bp.get("/requests/<request_id>/documents/<doc_id>/document.pdf")
def document(request_id: str, doc_id: str) -> ResponseReturnValue:
    pdf, name = _document(request_id, doc_id)
    response = make_response(pdf)
    response.headers["Content-Type"] = "application/pdf"
    response.headers["Content-Disposition"] = f'inline; filename="{name}"'
    return response


@bp.get("/events")
def events() -> ResponseReturnValue:
    """Server-Sent Events from the holder's live channel: the page refreshes its list on each."""
    user = _user()
    if user is None:
        return Response("", status=401)
    svc = services()
    channel = notify.holder_channel(svc, user.id)

    def stream() -> Iterator[str]:
        pubsub = svc.redis.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel)
            yield "retry: 3000\n\n"
            started = last = time.monotonic()
            while time.monotonic() - started < EVENTS_MAX_S:
                message = pubsub.get_message(timeout=1.0)
                if message is not None:
                    data = message["data"].decode() if isinstance(message["data"], bytes) else message["data"]
                    yield f"event: request\ndata: {data}\n\n"
                elif time.monotonic() - last >= 15:
                    yield ": keep-alive\n\n"
                    last = time.monotonic()
        except RedisError:
            yield "event: error\ndata: {}\n\n"
        finally:
            pubsub.close()

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@bp.get("/manifest.webmanifest")
def manifest() -> ResponseReturnValue:
    lang = i18n.language()
    body = {"name": i18n.t("app", lang), "short_name": i18n.t("app", lang), "lang": lang,
            "start_url": url_for("phone.home"), "scope": url_for("phone.home"), "display": "standalone",
            "background_color": "#ffffff", "theme_color": "#b71c1c",
            "icons": [{"src": url_for("phone.static", filename="icon.svg"), "sizes": "any", "type": "image/svg+xml"}]}
    return Response(json.dumps(body, ensure_ascii=False), mimetype="application/manifest+json")
