"""Sending: a completed sign request's documents go out as edXML packets, one outbox row per
(document, recipient); revoke / update / replace follow-ups; take-back requests (status 13).

The packet for each recipient is built and stored when the send is accepted, so what goes out is
fixed at that moment and survives any crash; the exchange worker only delivers bytes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange import edxml, organ_id
from exchange.errors import PacketError
from signer import audit
from signer.authz import require_organisation, require_scope, visible_organisations
from signer.blobs import BlobStore
from signer.errors import Conflict, Forbidden, InvalidInput, InvalidPacket, NotFound, SecretDocument
from signer.interchange import delivery
from signer.interchange.models import AxisUnit, OutboxItem, OutboxState, Outgoing
from signer.interchange.packets import code_text, local_now, organ, staff_dict, staff_of, unit_organ
from signer.models import CredentialKind, Organisation, Role
from signer.principal import Principal
from signer.signing.models import DocKind, DocState, RequestState, SignRequest

SENDERS = frozenset({Role.CLERK, Role.ADMIN})


class CodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    number: str = Field(min_length=1, max_length=11)
    notation: str = Field(default="", max_length=30)


class TypeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: int = Field(default=1, ge=1, le=2)
    detail: int = Field(default=0, ge=0)
    name: str = Field(min_length=1, max_length=100)


class SignerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    competence: str = Field(default="", max_length=100)
    position: str = Field(default="", max_length=255)
    full_name: str = Field(min_length=1, max_length=255)


class StaffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    department: str = Field(default="", max_length=255)
    staff: str = Field(default="", max_length=255)
    mobile: str = Field(default="", max_length=32)
    email: str = Field(default="", max_length=255)


class SendBody(BaseModel):
    """What a clerk or a document system gives to send a signed document over the axis."""

    model_config = ConfigDict(extra="forbid")
    sign_request_id: str
    recipients: list[str] = Field(min_length=1, max_length=200)
    code: CodeIn
    document_type: TypeIn
    subject: str = Field(min_length=1, max_length=500)
    content: str = Field(default="", max_length=500)
    signer: SignerIn
    place: str = Field(default="", max_length=50)
    promulgation_date: date | None = None  # default: today in Vietnam
    due_date: date | None = None
    priority: int = Field(default=0, ge=0, le=4)
    steering_type: int = Field(default=0, ge=0, le=2)
    to_places: list[str] = Field(default_factory=list, max_length=50)
    appendixes: list[str] = Field(default_factory=list, max_length=50)
    sphere_of_promulgation: str = Field(default="", max_length=255)
    typer_notation: str = Field(default="", max_length=10)
    promulgation_amount: int | None = Field(default=None, ge=0)
    secret: bool = False  # văn bản mật: refused, never sent
    staff: StaffIn | None = None


class FollowUpBody(BaseModel):
    """A revoke (no files), or an update / replace carrying a newer signed version."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)
    sign_request_id: str | None = None  # update / replace: the request that signed the new version
    staff: StaffIn | None = None


def require_sender(db: Session, principal: Principal, organisation_id: str) -> None:
    require_scope(principal, "exchange")
    if principal.kind == "user" and not principal.has_any_role(SENDERS):
        raise Forbidden("sending over the axis needs the clerk role")
    if principal.kind == "anonymous":
        raise Forbidden("sign in first")
    require_organisation(db, principal, organisation_id, "sign request")


def signed_pdfs(db: Session, blobs: BlobStore, principal: Principal, request_id: str) -> tuple[SignRequest, list[
        tuple[str, bytes]]]:
    req = db.get(SignRequest, request_id)
    if req is None:
        raise NotFound("sign request not found")
    require_sender(db, principal, req.organisation_id)
    if req.state != RequestState.COMPLETED:
        raise Conflict(f"the sign request is {req.state}: only completed requests are sent")
    if req.credential.kind != CredentialKind.ORGANISATION:
        # Decree 30/2020 Art. 5: what leaves the body carries the organisation's signature too.
        raise Conflict("send the request in which the clerk added the organisation signature (profile issued)")
    pdfs = [(d.name, blobs.get(d.output_blob)) for d in req.documents
            if d.kind == DocKind.PDF and d.state == DocState.COMPLETED and d.output_blob]
    if not pdfs:
        raise Conflict("the sign request has no signed PDF to send")
    return req, pdfs


def _file_name(name: str) -> str:
    """A document's display name as a file name: "07/QĐ-UBND" must not read as a folder."""
    cleaned = "".join("_" if ch in '/\\:' or ord(ch) < 32 else ch for ch in name).strip(" .") or "van-ban"
    return cleaned if cleaned.lower().endswith(".pdf") else f"{cleaned}.pdf"


def attachments_of(pdfs: list[tuple[str, bytes]]) -> tuple[edxml.Attachment, ...]:
    return tuple(edxml.pdf_attachment(str(i + 1), _file_name(name), data, description=name)
                 for i, (name, data) in enumerate(pdfs))


def _check_recipients(db: Session, sender: str, recipients: list[str]) -> list[str]:
    seen: list[str] = []
    for code in recipients:
        try:
            organ_id.validate(code)
        except organ_id.InvalidOrganId as exc:
            raise InvalidInput(str(exc), field="recipients") from None
        if code == sender:
            raise InvalidInput("an organisation does not send to itself", field="recipients")
        if code in seen:
            raise InvalidInput(f"{code} is listed twice", field="recipients")
        if db.get(AxisUnit, code) is None:
            raise InvalidInput(f"{code} is not a unit connected to the axis (directory)", field="recipients")
        seen.append(code)
    return seen


def store_packets(db: Session, blobs: BlobStore, outgoing: Outgoing, packets: dict[str, bytes]) -> list[str]:
    ids = []
    for recipient, data in packets.items():
        item = OutboxItem(organisation_id=outgoing.organisation_id, kind="edoc", outgoing=outgoing,
                          recipient=recipient, packet_blob=blobs.put(data, prefix="edxml"))
        db.add(item)
        db.flush()
        ids.append(item.id)
    return ids


def build_checked(packet: edxml.DocumentPacket) -> bytes:
    try:
        edxml.validate_for_sending(packet)
        return edxml.build(packet)
    except PacketError as exc:
        raise InvalidPacket(str(exc), code=exc.code) from None


def send(db: Session, blobs: BlobStore, principal: Principal, body: SendBody) -> Outgoing:
    """Accept a send: one stored packet and one outbox row per recipient, delivered after commit."""
    if body.secret:
        raise SecretDocument("văn bản mật không được gửi qua trục liên thông (secret documents are never sent)")
    req, pdfs = signed_pdfs(db, blobs, principal, body.sign_request_id)
    org = db.get(Organisation, req.organisation_id)
    assert org is not None
    recipients = _check_recipients(db, org.code, body.recipients)
    code = edxml.Code(body.code.number, body.code.notation)
    day = body.promulgation_date or local_now().date()
    document_id = edxml.document_id(org.code, day, code)
    _refuse_resend(db, org.id, document_id, recipients)
    staff = staff_of(db, principal, body.staff.model_dump() if body.staff else None)
    attachments = attachments_of(pdfs)
    base = edxml.DocumentPacket(
        sender=organ(db, org), recipients=(), document_id=document_id, code=code,
        promulgation=edxml.Promulgation(body.place, day),
        document_type=edxml.DocumentType(body.document_type.type, body.document_type.detail, body.document_type.name),
        subject=body.subject, content=body.content or body.subject,
        signer=edxml.SignerInfo(body.signer.competence, body.signer.position, body.signer.full_name),
        due_date=body.due_date,
        other=edxml.OtherInfo(priority=body.priority, sphere_of_promulgation=body.sphere_of_promulgation,
                              typer_notation=body.typer_notation, promulgation_amount=body.promulgation_amount,
                              page_amount=sum(d.page_count or 0 for d in req.documents) or None,
                              appendixes=tuple(body.appendixes)),
        steering_type=body.steering_type, to_places=tuple(body.to_places),
        traces=(edxml.Trace(org.code, local_now()),),
        business=edxml.Business(document_id=document_id, doc_type=edxml.BusinessType.NEW,
                                reason="Văn bản điện tử mới", staff=staff),
        attachments=attachments,
    )
    packets = {r: build_checked(replace(base, recipients=(unit_organ(db, r),))) for r in recipients}
    details: dict[str, Any] = {
        "promulgation_date": day.isoformat(), "document_type": body.document_type.model_dump(),
        "signer": body.signer.model_dump(), "priority": body.priority, "steering_type": body.steering_type,
        "files": [{"name": a.name, "size": len(a.data)} for a in attachments], "staff": staff_dict(staff),
    }
    outgoing = Outgoing(organisation_id=org.id, sign_request_id=req.id, document_id=document_id,
                        business_type=edxml.BusinessType.NEW, code=code_text(code), subject=body.subject,
                        details=details, created_by=principal.ref)
    db.add(outgoing)
    ids = store_packets(db, blobs, outgoing, packets)
    audit.record(db, actor=principal.ref, action="exchange.send", target=f"outgoing:{outgoing.id}",
                 organisation_id=org.id, detail={"document_id": document_id, "recipients": recipients,
                                                 "sign_request_id": req.id, "files": len(attachments)})
    delivery.deliver_after_commit(db, ids)
    return outgoing


def _refuse_resend(db: Session, organisation_id: str, document_id: str, recipients: list[str]) -> None:
    live = db.scalars(select(OutboxItem.recipient).join(Outgoing, OutboxItem.outgoing_id == Outgoing.id).where(
        Outgoing.organisation_id == organisation_id, Outgoing.document_id == document_id,
        Outgoing.business_type == edxml.BusinessType.NEW, OutboxItem.kind == "edoc",
        OutboxItem.recipient.in_(recipients), OutboxItem.state != OutboxState.DEAD)).all()
    if live:
        raise Conflict(f"{document_id} was already sent to {', '.join(sorted(set(live)))}")


def get_outgoing(db: Session, principal: Principal, outgoing_id: str) -> Outgoing:
    outgoing = db.get(Outgoing, outgoing_id)
    if outgoing is None:
        raise NotFound("outgoing document not found")
    require_scope(principal, "exchange")
    require_organisation(db, principal, outgoing.organisation_id, "outgoing document")
    return outgoing


def list_outgoing(db: Session, principal: Principal, limit: int = 100) -> list[Outgoing]:
    require_scope(principal, "exchange")
    visible = visible_organisations(db, principal)
    query = select(Outgoing).order_by(Outgoing.created_at.desc()).limit(limit)
    if visible is not None:
        query = query.where(Outgoing.organisation_id.in_(visible))
    return list(db.scalars(query))
