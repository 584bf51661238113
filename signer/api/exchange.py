"""``/v1/exchange``: sending signed documents over the axis and tracking them per recipient,
incoming documents with their verification report and the clerk's answers, monthly reports."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from signer.api.views import iso
from signer.authz import require_scope
from signer.errors import InvalidInput, NotFound
from signer.http.auth import current_principal, services
from signer.http.bodies import parse_json
from signer.interchange import answers, delivery, directory, followups, reports, sending
from signer.interchange.models import Incoming, OutboxItem, Outgoing, StatusEvent

bp = Blueprint("exchange", __name__, url_prefix="/v1/exchange")


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(pattern=r"^\d{2}$")
    description: str = Field(default="", max_length=500)


class TakeBackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


def _item_view(db: Session, item: OutboxItem) -> dict[str, Any]:
    events = db.scalars(select(StatusEvent).where(StatusEvent.outbox_id == item.id).order_by(StatusEvent.at))
    return {
        "id": item.id, "recipient": item.recipient, "kind": item.kind, "state": item.state,
        "attempts": item.attempts, "last_error": item.last_error, "axis_doc_id": item.axis_doc_id,
        "sent_at": iso(item.sent_at) if item.sent_at else None, "status": item.status,
        "status_at": iso(item.status_at) if item.status_at else None,
        "history": [{"code": e.status_code, "description": e.description, "at": iso(e.at), "staff": e.staff}
                    for e in events],
    }


def outgoing_view(db: Session, o: Outgoing) -> dict[str, Any]:
    """An outgoing document: per-recipient delivery, latest status and status history."""
    follow_ups = db.scalars(select(Outgoing).where(Outgoing.previous_id == o.id).order_by(Outgoing.created_at))
    requests = db.scalars(select(OutboxItem).where(OutboxItem.outgoing_id == o.id, OutboxItem.kind == "status"))
    return {
        "id": o.id, "organisation_id": o.organisation_id, "document_id": o.document_id, "code": o.code,
        "subject": o.subject, "business_type": o.business_type, "sign_request_id": o.sign_request_id,
        "previous_id": o.previous_id, "created_by": o.created_by, "created_at": iso(o.created_at),
        "details": o.details,
        "recipients": [_item_view(db, i) for i in o.items if i.kind == "edoc"],
        "follow_ups": [outgoing_view(db, f) for f in follow_ups],
        "status_requests": [{"id": i.id, "recipient": i.recipient, "code": i.status_code, "state": i.state}
                            for i in requests],
    }


def incoming_view(i: Incoming, *, full: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": i.id, "organisation_id": i.organisation_id, "sender": i.sender, "document_id": i.document_id,
        "code": i.code, "subject": i.subject, "state": i.state, "verdict": i.verdict, "status_code": i.status_code,
        "pending_action": i.pending_action, "received_at": iso(i.received_at),
    }
    if full:
        files = [{k: v for k, v in f.items() if k != "blob"} | {"position": n}
                 for n, f in enumerate(i.details.get("files", []))]
        view |= {"details": {k: v for k, v in i.details.items() if k not in {"files", "replaced_packet"}},
                 "files": files, "verification": i.verification,
                 "pending": {k: v for k, v in (i.pending or {}).items() if k in {"reason"}} or None}
    return view


@bp.post("/outgoing")
def send() -> ResponseReturnValue:
    """Send a completed sign request's signed PDFs to units on the axis (one packet per recipient)"""
    principal = current_principal()
    body = parse_json(sending.SendBody)
    svc = services()
    directory.sync_if_missing(svc, body.recipients)
    with svc.db.session() as db:
        outgoing = sending.send(db, svc.blobs, principal, body)
        return jsonify(outgoing_view(db, outgoing)), 201


@bp.get("/outgoing")
def list_outgoing() -> ResponseReturnValue:
    """Outgoing documents, newest first"""
    principal = current_principal()
    with services().db.session(readonly=True) as db:
        return jsonify(items=[outgoing_view(db, o) for o in sending.list_outgoing(db, principal)])


@bp.get("/outgoing/<outgoing_id>")
def get_outgoing(outgoing_id: str) -> ResponseReturnValue:
    """One outgoing document: per-recipient delivery state, latest status and history"""
    principal = current_principal()
    with services().db.session(readonly=True) as db:
        return jsonify(outgoing_view(db, sending.get_outgoing(db, principal, outgoing_id)))


@bp.post("/outgoing/<outgoing_id>/<kind>")
def follow_up(outgoing_id: str, kind: str) -> ResponseReturnValue:
    """Revoke, update or replace a sent document, or ask for it back (take-back, status 13)"""
    principal = current_principal()
    svc = services()
    with svc.db.session() as db:
        if kind == "take-back":
            body = parse_json(TakeBackBody)
            followups.take_back(db, svc.blobs, principal, outgoing_id, body.reason)
            return jsonify(outgoing_view(db, sending.get_outgoing(db, principal, outgoing_id))), 202
        if kind not in followups.KINDS:
            raise NotFound("no such follow-up: revoke, update, replace or take-back")
        outgoing = followups.follow_up(db, svc.blobs, principal, outgoing_id, kind,
                                       parse_json(sending.FollowUpBody))
        return jsonify(outgoing_view(db, outgoing)), 201


@bp.post("/outbox/<item_id>/retry")
def retry(item_id: str) -> ResponseReturnValue:
    """Another round of delivery attempts for a dead outbox row"""
    principal = current_principal()
    with services().db.session() as db:
        item = db.get(OutboxItem, item_id)
        if item is None:
            raise NotFound("outbox row not found")
        sending.require_sender(db, principal, item.organisation_id)
        item = delivery.retry(db, item_id)
        return jsonify(id=item.id, state=item.state)


@bp.get("/incoming")
def list_incoming() -> ResponseReturnValue:
    """Incoming documents, newest first; `?state=received`"""
    principal = current_principal()
    with services().db.session(readonly=True) as db:
        items = answers.list_incoming(db, principal, request.args.get("state"))
        return jsonify(items=[incoming_view(i, full=False) for i in items])


@bp.get("/incoming/<incoming_id>")
def get_incoming(incoming_id: str) -> ResponseReturnValue:
    """One incoming document with its metadata, files and verification report"""
    principal = current_principal()
    with services().db.session(readonly=True) as db:
        return jsonify(incoming_view(answers.get_incoming(db, principal, incoming_id)))


@bp.get("/incoming/<incoming_id>/files/<int:position>")
def download(incoming_id: str, position: int) -> ResponseReturnValue:
    """One received file, as it arrived"""
    principal = current_principal()
    with services().db.session(readonly=True) as db:
        files = answers.get_incoming(db, principal, incoming_id).details.get("files", [])
    if not 0 <= position < len(files):
        raise NotFound("no such file")
    f = files[position]
    return Response(services().blobs.get(f["blob"]), mimetype=f["content_type"] or "application/octet-stream",
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{_quote(f['name'])}"})


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@bp.post("/incoming/<incoming_id>/status")
def answer(incoming_id: str) -> ResponseReturnValue:
    """Answer an incoming document: 02 reject, 03 accept, 04 assigned, 05 processing, 06 completed;
    a pending revoke 03/02, an update, replace or take-back 15/16"""
    principal = current_principal()
    body = parse_json(AnswerBody)
    svc = services()
    with svc.db.session() as db:
        incoming = answers.answer(db, svc.blobs, principal, incoming_id, body.code, body.description)
        return jsonify(incoming_view(incoming))


@bp.get("/reports/monthly")
def monthly() -> ResponseReturnValue:
    """Documents signed, sent and received in a month with every status count; `?organisation_id=&month=YYYY-MM`"""
    principal = current_principal()
    organisation_id = request.args.get("organisation_id") or principal.organisation_id
    month = request.args.get("month")
    if not organisation_id or not month:
        raise InvalidInput("give organisation_id and month (YYYY-MM)", field="month")
    with services().db.session(readonly=True) as db:
        return jsonify(reports.monthly(db, principal, organisation_id, month))


@bp.get("/directory")
def units() -> ResponseReturnValue:
    """The units connected to the axis (synchronised hourly)"""
    require_scope(current_principal(), "exchange")
    with services().db.session(readonly=True) as db:
        return jsonify(items=[{"code": u.code, "name": u.name, "mail": u.mail, "parent_code": u.parent_code}
                              for u in directory.units(db)])
