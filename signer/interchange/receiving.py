"""Receiving from the axis (exchange worker): poll, fetch, parse, verify, store, acknowledge,
answer 01 (or 02 when a signature is broken); status packets about our own documents become the
senders' trace history; revoke / update / replace packets and take-back requests wait for the
clerk's answer on the stored document.

Order matters for "nothing is lost": the document and its automatic status row commit together
before the axis is told ``done``; a crash in between means the next poll fetches the packet again
and the duplicate check (same sender, same DocumentId) acknowledges it without storing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange import edxml
from exchange.errors import AxisError, PacketError
from exchange.transport import DeliveryStatus, Envelope, MessageType, Transport
from signer import audit
from signer.interchange import answers
from signer.interchange.accounts import accounts, organisation_code, transport_for
from signer.interchange.checks import verify_files
from signer.interchange.models import Incoming, IncomingState, OutboxItem, Outgoing, StatusEvent
from signer.interchange.packets import code_text, header_details, to_utc
from signer.models import aware
from signer.services import Services

log = logging.getLogger(__name__)
ACTOR = "system:exchange"


@dataclass
class PollReport:
    documents: int = 0
    duplicates: int = 0
    statuses: int = 0
    follow_ups: int = 0
    refused: list[str] = field(default_factory=list)  # axis doc ids answered "fail"


def poll_all(services: Services) -> dict[str, PollReport]:
    """Poll the axis for every organisation that has an account (scheduler task)."""
    with services.db.session(readonly=True) as db:
        ids = [a.organisation_id for a in accounts(db)]
    out = {}
    for organisation_id in ids:
        try:
            out[organisation_id] = poll(services, organisation_id)
        except AxisError as exc:
            log.warning("polling the axis for %s failed: %s", organisation_id, exc)
    return out


def poll(services: Services, organisation_id: str) -> PollReport:
    """Fetch and handle everything waiting for one organisation: documents first, then statuses."""
    with services.db.session(readonly=True) as db:
        transport = transport_for(services, db, organisation_id)
        code = organisation_code(db, organisation_id)
    report = PollReport()
    for message_type in (MessageType.EDOC, MessageType.STATUS):
        for envelope in transport.received(message_type):
            _handle(services, transport, organisation_id, code, envelope, report)
    return report


def _handle(services: Services, transport: Transport, organisation_id: str, code: str, envelope: Envelope,
            report: PollReport) -> None:
    data = transport.fetch(envelope.doc_id)
    try:
        packet = edxml.parse(data, max_bytes=services.settings.axis_max_packet_bytes)
        if isinstance(packet, edxml.DocumentPacket) and code not in {r.organ_id for r in packet.recipients}:
            raise PacketError("wrong-recipient", f"the packet is not addressed to {code}")
    except PacketError as exc:
        _refuse(services, transport, organisation_id, envelope, exc)
        report.refused.append(envelope.doc_id)
        return
    if isinstance(packet, edxml.StatusPacket):
        _status(services, organisation_id, code, envelope, packet, report)
    elif packet.business_type == edxml.BusinessType.NEW:
        _document(services, organisation_id, envelope, packet, data, report)
    else:
        _follow_up(services, organisation_id, envelope, packet, data, report)
    transport.update_status(envelope.doc_id, DeliveryStatus.DONE)


def _refuse(services: Services, transport: Transport, organisation_id: str, envelope: Envelope,
            exc: PacketError) -> None:
    """Unsafe or malformed: nothing stored, the axis told ``fail`` with the reason, audited."""
    log.warning("refused axis packet %s from %s: %s", envelope.doc_id, envelope.sender, exc.code)
    audit.record_now(services.db, actor=ACTOR, action="exchange.receive", target=f"axis:{envelope.doc_id}",
                     outcome=audit.Outcome.FAILED, organisation_id=organisation_id,
                     detail={"sender": envelope.sender, "problem": exc.code, "message": str(exc)[:300]})
    transport.update_status(envelope.doc_id, DeliveryStatus.FAIL, f"{exc.code}: {exc}"[:500])


def _document(services: Services, organisation_id: str, envelope: Envelope, packet: edxml.DocumentPacket,
              data: bytes, report: PollReport) -> None:
    sender = packet.sender.organ_id
    with services.db.session() as db:
        if _find(db, organisation_id, sender, packet.document_id) is not None:
            report.duplicates += 1
            return
    files, verification, verdict, reason = verify_files(services, packet)
    with services.db.session() as db:
        details = header_details(packet) | {"files": files}
        incoming = Incoming(organisation_id=organisation_id, sender=sender, document_id=packet.document_id,
                            axis_doc_id=envelope.doc_id, packet_blob=services.blobs.put(data, prefix="edxmlin"),
                            code=code_text(packet.code)[:64], subject=packet.subject[:500], details=details,
                            verification=verification, verdict=verdict,
                            state=IncomingState.REJECTED if reason else IncomingState.RECEIVED)
        db.add(incoming)
        try:
            db.flush()
        except IntegrityError:  # another worker stored it a moment ago
            db.rollback()
            report.duplicates += 1
            return
        audit.record(db, actor=ACTOR, action="exchange.receive", target=f"incoming:{incoming.id}",
                     organisation_id=organisation_id,
                     detail={"sender": sender, "document_id": packet.document_id, "verdict": verdict,
                             "files": len(files), "axis_doc_id": envelope.doc_id})
        if reason:
            answers.queue_status(db, services.blobs, incoming, edxml.STATUS_REJECTED, reason, actor=ACTOR)
        else:
            answers.queue_status(db, services.blobs, incoming, edxml.STATUS_ARRIVED,
                                 "Đã đến - Phần mềm QLVB đã nhận nhưng văn thư chưa xử lý", actor=ACTOR)
    report.documents += 1


def _find(db: Session, organisation_id: str, sender: str, document_id: str) -> Incoming | None:
    return db.scalar(select(Incoming).where(Incoming.organisation_id == organisation_id, Incoming.sender == sender,
                                            Incoming.document_id == document_id))


FOLLOW_UPS = {edxml.BusinessType.REVOKE: "revoke", edxml.BusinessType.UPDATE: "update",
              edxml.BusinessType.REPLACE: "replace"}


def _follow_up(services: Services, organisation_id: str, envelope: Envelope, packet: edxml.DocumentPacket,
               data: bytes, report: PollReport) -> None:
    """A revoke / update / replace of a document we hold: kept pending for the clerk's answer."""
    target = packet.business.document_id if packet.business and packet.business.document_id else packet.document_id
    files: list[dict[str, Any]] = []
    verification: dict[str, Any] = {}
    if packet.attachments:
        files, verification, _, _ = verify_files(services, packet)
    with services.db.session() as db:
        incoming = _find(db, organisation_id, packet.sender.organ_id, target)
        if incoming is None:
            log.info("follow-up %s for an unknown document %s", envelope.doc_id, target)
            audit.record(db, actor=ACTOR, action="exchange.receive", target=f"axis:{envelope.doc_id}",
                         outcome=audit.Outcome.FAILED, organisation_id=organisation_id,
                         detail={"sender": packet.sender.organ_id, "problem": "unknown-document"})
            return
        if (incoming.pending or {}).get("axis_doc_id") == envelope.doc_id:
            report.duplicates += 1
            return
        kind = FOLLOW_UPS[packet.business_type]
        incoming.pending_action = kind
        incoming.pending = {"axis_doc_id": envelope.doc_id, "reason": packet.business.reason if packet.business else "",
                            "files": files, "verification": verification,
                            "packet_blob": services.blobs.put(data, prefix="edxmlin")}
        audit.record(db, actor=ACTOR, action=f"exchange.receive.{kind}", target=f"incoming:{incoming.id}",
                     organisation_id=organisation_id, detail={"sender": packet.sender.organ_id,
                                                              "document_id": target})
    report.follow_ups += 1


def _status(services: Services, organisation_id: str, code: str, envelope: Envelope, packet: edxml.StatusPacket,
            report: PollReport) -> None:
    if packet.status_code == edxml.STATUS_TAKE_BACK:
        _take_back(services, organisation_id, envelope, packet, report)
        return
    with services.db.session() as db:
        if db.scalar(select(StatusEvent.id).where(StatusEvent.organisation_id == organisation_id,
                                                  StatusEvent.axis_doc_id == envelope.doc_id)):
            report.duplicates += 1
            return
        item = _answered_item(db, organisation_id, packet)
        at = to_utc(packet.timestamp)
        db.add(StatusEvent(organisation_id=organisation_id, outbox_id=item.id if item else None,
                           axis_doc_id=envelope.doc_id, document_id=packet.response_for.document_id,
                           sender=packet.sender.organ_id, status_code=packet.status_code,
                           description=packet.description[:2000], at=at,
                           staff={"department": packet.staff.department, "staff": packet.staff.staff}))
        if item is not None and (item.status_at is None or aware(item.status_at) <= at):
            item.status, item.status_at = packet.status_code, at
    report.statuses += 1


def _answered_item(db: Session, organisation_id: str, packet: edxml.StatusPacket) -> OutboxItem | None:
    """The newest document packet we sent to the answering unit under that DocumentId (an answer to
    a revoke carries the same DocumentId as the original: the newest send is what it answers)."""
    return db.scalar(
        select(OutboxItem).join(Outgoing, OutboxItem.outgoing_id == Outgoing.id).where(
            OutboxItem.organisation_id == organisation_id, OutboxItem.kind == "edoc",
            OutboxItem.recipient == packet.sender.organ_id,
            Outgoing.document_id == packet.response_for.document_id,
        ).order_by(Outgoing.created_at.desc()).limit(1))


def _take_back(services: Services, organisation_id: str, envelope: Envelope, packet: edxml.StatusPacket,
               report: PollReport) -> None:
    with services.db.session() as db:
        incoming = _find(db, organisation_id, packet.sender.organ_id, packet.response_for.document_id)
        if incoming is None or (incoming.pending or {}).get("axis_doc_id") == envelope.doc_id:
            report.duplicates += incoming is not None
            return
        incoming.pending_action = "take-back"
        incoming.pending = {"axis_doc_id": envelope.doc_id, "reason": packet.description[:500]}
        audit.record(db, actor=ACTOR, action="exchange.receive.take_back", target=f"incoming:{incoming.id}",
                     organisation_id=organisation_id, detail={"sender": packet.sender.organ_id})
    report.follow_ups += 1
