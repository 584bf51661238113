"""The receiving clerk's side: incoming documents, and the status packets that answer them.

Codes (AXIS.md section 3): 02 reject (with a reason), 03 accept, 04 assigned, 05 processing,
06 completed; a pending revoke is answered 03 (accept) or 02 (refuse); an update, a replace or a
take-back (13) is answered 15 (agree) or 16 (refuse).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange import edxml
from signer import audit
from signer.authz import require_organisation, require_scope, visible_organisations
from signer.blobs import BlobStore
from signer.errors import Conflict, Forbidden, InvalidInput, NotFound
from signer.interchange import delivery
from signer.interchange.models import Incoming, IncomingState, OutboxItem
from signer.interchange.packets import local_now, organ, staff_of
from signer.models import Organisation, Role
from signer.principal import Principal

S = IncomingState
# Plain answers: code -> (states it may follow, the state it leads to).
PLAIN = {
    "02": ({S.RECEIVED}, S.REJECTED),
    "03": ({S.RECEIVED}, S.ACCEPTED),
    "04": ({S.ACCEPTED}, S.ASSIGNED),
    "05": ({S.ACCEPTED, S.ASSIGNED}, S.PROCESSING),
    "06": ({S.ACCEPTED, S.ASSIGNED, S.PROCESSING}, S.COMPLETED),
}
# Answers to a pending follow-up: action -> {code: agrees?}
PENDING = {"revoke": {"03": True, "02": False}, "update": {"15": True, "16": False},
           "replace": {"15": True, "16": False}, "take-back": {"15": True, "16": False}}
CLERKS = frozenset({Role.CLERK, Role.ADMIN})


def queue_status(db: Session, blobs: BlobStore, incoming: Incoming, code: str, description: str, *,
                 actor: str, principal: Principal | None = None) -> OutboxItem:
    """Build a status packet answering ``incoming`` and queue it for the original sender."""
    org = db.get(Organisation, incoming.organisation_id)
    assert org is not None
    details = incoming.details
    day = (details.get("promulgation") or {}).get("date")
    packet = edxml.StatusPacket(
        sender=organ(db, org),
        response_for=edxml.ResponseFor(organ_id=incoming.sender, code=incoming.code,
                                       promulgation_date=date.fromisoformat(day) if day else None,
                                       document_id=incoming.document_id),
        status_code=code, timestamp=local_now(), description=description,
        staff=staff_of(db, principal) if principal else edxml.StaffInfo(department="Văn thư", staff="Hệ thống"))
    item = OutboxItem(organisation_id=org.id, kind="status", incoming_id=incoming.id, status_code=code,
                      recipient=incoming.sender, packet_blob=blobs.put(edxml.build(packet), prefix="edxml"))
    db.add(item)
    db.flush()
    audit.record(db, actor=actor, action="exchange.status", target=f"incoming:{incoming.id}",
                 organisation_id=org.id, detail={"code": code, "recipient": incoming.sender})
    delivery.deliver_after_commit(db, [item.id])
    return item


def get_incoming(db: Session, principal: Principal, incoming_id: str) -> Incoming:
    incoming = db.get(Incoming, incoming_id)
    if incoming is None:
        raise NotFound("incoming document not found")
    require_scope(principal, "exchange")
    require_organisation(db, principal, incoming.organisation_id, "incoming document")
    return incoming


def list_incoming(db: Session, principal: Principal, state: str | None = None, limit: int = 100) -> list[Incoming]:
    require_scope(principal, "exchange")
    if state is not None and state not in {s.value for s in IncomingState}:
        raise InvalidInput(f"state is one of {[s.value for s in IncomingState]}", field="state")
    visible = visible_organisations(db, principal)
    query = select(Incoming).order_by(Incoming.received_at.desc()).limit(limit)
    if visible is not None:
        query = query.where(Incoming.organisation_id.in_(visible))
    if state:
        query = query.where(Incoming.state == state)
    return list(db.scalars(query))


def answer(db: Session, blobs: BlobStore, principal: Principal, incoming_id: str, code: str,
           description: str = "") -> Incoming:
    """The clerk's answer to an incoming document (or to the follow-up pending on it)."""
    incoming = get_incoming(db, principal, incoming_id)
    if principal.kind == "user" and not principal.has_any_role(CLERKS):
        raise Forbidden("answering incoming documents needs the clerk role")
    if incoming.pending_action:
        _answer_pending(db, incoming, code, description)
    else:
        if code not in PLAIN:
            raise InvalidInput(f"the status code is one of {sorted(PLAIN)}", field="code")
        allowed, target = PLAIN[code]
        if incoming.state not in allowed:
            raise Conflict(f"a document in state {incoming.state} cannot be answered {code}")
        if code == "02" and not description.strip():
            raise InvalidInput("a rejection (02) says why", field="description")
        incoming.state = target
    queue_status(db, blobs, incoming, code, description or _DEFAULT_TEXT.get(code, ""), actor=principal.ref,
                 principal=principal)
    return incoming


_DEFAULT_TEXT = {"03": "Đã tiếp nhận, vào sổ văn bản đến", "04": "Đã phân công xử lý", "05": "Đang xử lý",
                 "06": "Đã hoàn thành", "15": "Đồng ý", "16": "Không đồng ý"}


def _answer_pending(db: Session, incoming: Incoming, code: str, description: str) -> None:
    action = incoming.pending_action or ""
    codes = PENDING[action]
    if code not in codes:
        raise InvalidInput(f"a pending {action} is answered {' or '.join(sorted(codes))}", field="code")
    pending = incoming.pending or {}
    if codes[code]:
        if action == "revoke":
            incoming.state = IncomingState.REVOKED
        elif action == "take-back":
            incoming.state = IncomingState.WITHDRAWN
        else:  # update / replace: the newer version becomes the document
            incoming.details = {**incoming.details, "files": pending.get("files", []),
                                "replaced_packet": incoming.packet_blob}
            incoming.verification = pending.get("verification", {})
            incoming.packet_blob = pending.get("packet_blob", incoming.packet_blob)
    history = list(incoming.details.get("follow_ups", []))
    history.append({"action": action, "reason": pending.get("reason", ""), "answer": code,
                    "description": description})
    incoming.details = {**incoming.details, "follow_ups": history}
    incoming.pending_action, incoming.pending = None, None
