"""What a sender does after a document left: revoke, update or replace it (document packets that
name the original in ResponseFor and Bussiness), or ask to take it back (status 13).

Every follow-up goes to the recipients the original went to, as new outbox rows.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from sqlalchemy.orm import Session

from exchange import edxml
from signer import audit
from signer.blobs import BlobStore
from signer.errors import Conflict, InvalidInput
from signer.interchange import delivery
from signer.interchange.models import OutboxItem, OutboxState, Outgoing
from signer.interchange.packets import local_now, organ, staff_dict, staff_of, unit_organ
from signer.interchange.sending import (
    FollowUpBody,
    attachments_of,
    build_checked,
    get_outgoing,
    require_sender,
    signed_pdfs,
    store_packets,
)
from signer.models import Organisation
from signer.principal import Principal

KINDS = {"revoke": edxml.BusinessType.REVOKE, "update": edxml.BusinessType.UPDATE,
         "replace": edxml.BusinessType.REPLACE}


def _original(db: Session, principal: Principal, outgoing_id: str) -> tuple[Outgoing, Organisation, list[str]]:
    original = get_outgoing(db, principal, outgoing_id)
    require_sender(db, principal, original.organisation_id)
    if original.business_type != edxml.BusinessType.NEW:
        raise Conflict("follow-ups apply to the original document, not to another follow-up")
    recipients = [i.recipient for i in original.items if i.kind == "edoc" and i.state != OutboxState.DEAD]
    if not recipients:
        raise Conflict("the document reached no recipient: nothing to follow up")
    org = db.get(Organisation, original.organisation_id)
    assert org is not None
    return original, org, recipients


def _response_for(original: Outgoing, organ_id: str) -> edxml.ResponseFor:
    day = original.details.get("promulgation_date")
    return edxml.ResponseFor(organ_id=organ_id, code=original.code,
                             promulgation_date=date.fromisoformat(day) if day else None,
                             document_id=original.document_id)


def follow_up(db: Session, blobs: BlobStore, principal: Principal, outgoing_id: str, kind: str,
              body: FollowUpBody) -> Outgoing:
    """Send a revoke, update or replace of ``outgoing_id`` to every recipient it reached."""
    if kind not in KINDS:
        raise InvalidInput("kind is revoke, update or replace", field="kind")
    original, org, recipients = _original(db, principal, outgoing_id)
    attachments: tuple[edxml.Attachment, ...] = ()
    if kind != "revoke":
        if not body.sign_request_id:
            raise InvalidInput(f"an {kind} carries the newly signed version: give sign_request_id",
                               field="sign_request_id")
        _, pdfs = signed_pdfs(db, blobs, principal, body.sign_request_id)
        attachments = attachments_of(pdfs)
    staff = staff_of(db, principal, body.staff.model_dump() if body.staff else None)
    doc_type = KINDS[kind]
    business = edxml.Business(
        document_id=original.document_id, doc_type=doc_type, reason=body.reason, staff=staff,
        update=edxml.UpdateInfo(document_info=body.reason, receivers=tuple(edxml.Receiver(r) for r in recipients))
        if doc_type == edxml.BusinessType.UPDATE else None,
        replacements=(edxml.Replacement(original.document_id, tuple(recipients)),)
        if doc_type == edxml.BusinessType.REPLACE else ())
    d = original.details
    base = edxml.DocumentPacket(
        sender=organ(db, org), recipients=(), document_id=original.document_id,
        code=edxml.Code(*original.code.split("/", 1)) if "/" in original.code else edxml.Code(original.code, ""),
        promulgation=edxml.Promulgation("", date.fromisoformat(d["promulgation_date"])),
        document_type=edxml.DocumentType(d["document_type"]["type"], d["document_type"]["detail"],
                                         d["document_type"]["name"]),
        subject=original.subject, content=body.reason,
        signer=edxml.SignerInfo(**d["signer"]),
        response_for=(_response_for(original, org.code),),
        traces=(edxml.Trace(org.code, local_now()),), business=business, attachments=attachments)
    packets = {}
    for r in recipients:
        packet = replace(base, recipients=(unit_organ(db, r),))
        packets[r] = build_checked(packet)
    outgoing = Outgoing(organisation_id=org.id, sign_request_id=body.sign_request_id, previous_id=original.id,
                        document_id=original.document_id, business_type=doc_type, code=original.code,
                        subject=original.subject, created_by=principal.ref,
                        details={**d, "reason": body.reason, "staff": staff_dict(staff),
                                 "files": [{"name": a.name, "size": len(a.data)} for a in attachments]})
    db.add(outgoing)
    ids = store_packets(db, blobs, outgoing, packets)
    audit.record(db, actor=principal.ref, action=f"exchange.{kind}", target=f"outgoing:{outgoing.id}",
                 organisation_id=org.id, detail={"document_id": original.document_id, "of": original.id,
                                                 "recipients": recipients})
    delivery.deliver_after_commit(db, ids)
    return outgoing


def take_back(db: Session, blobs: BlobStore, principal: Principal, outgoing_id: str, reason: str) -> list[str]:
    """Ask every recipient to give the document back (status 13); they answer 15 or 16."""
    if not reason.strip():
        raise InvalidInput("say why the document is taken back", field="reason")
    original, org, recipients = _original(db, principal, outgoing_id)
    staff = staff_of(db, principal)
    ids = []
    for r in recipients:
        packet = edxml.StatusPacket(sender=organ(db, org), response_for=_response_for(original, r),
                                    status_code=edxml.STATUS_TAKE_BACK, timestamp=local_now(),
                                    description=reason, staff=staff)
        item = OutboxItem(organisation_id=org.id, kind="status", outgoing_id=original.id, status_code="13",
                          recipient=r, packet_blob=blobs.put(edxml.build(packet), prefix="edxml"))
        db.add(item)
        db.flush()
        ids.append(item.id)
    audit.record(db, actor=principal.ref, action="exchange.take_back", target=f"outgoing:{original.id}",
                 organisation_id=org.id, detail={"document_id": original.document_id, "recipients": recipients})
    delivery.deliver_after_commit(db, ids)
    return ids
