"""From our rows to edXML values and back: organisations, staff, times.

The axis's packets carry local times without a zone; Vietnam is UTC+07:00 all year.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from sqlalchemy.orm import Session

from exchange import edxml
from signer.interchange.models import AxisUnit
from signer.models import Organisation, User
from signer.principal import Principal

VN = timezone(timedelta(hours=7), "ICT")


def local_now() -> datetime:
    """Now in Vietnam, naive, as packets carry it."""
    return datetime.now(VN).replace(tzinfo=None, microsecond=0)


def to_utc(local: datetime) -> datetime:
    """A packet's naive local time as an aware UTC datetime."""
    if local.tzinfo is None:
        local = local.replace(tzinfo=VN)
    return local.astimezone(UTC)


def organ(db: Session, organisation: Organisation) -> edxml.Organ:
    """Our organisation as a packet's From."""
    parent = organisation.parent.name if organisation.parent is not None else organisation.name
    return edxml.Organ(organ_id=organisation.code, organization_in_charge=parent, organ_name=organisation.name)


def unit_organ(db: Session, code: str) -> edxml.Organ:
    """A recipient as the directory names it."""
    unit = db.get(AxisUnit, code)
    return edxml.Organ(organ_id=code, organ_name=unit.name if unit else "", email=unit.mail if unit else "")


def staff_of(db: Session, principal: Principal, given: dict[str, str] | None = None) -> edxml.StaffInfo:
    """Who acts for the organisation: the body's staff block, else the signed-in person."""
    if given:
        return edxml.StaffInfo(**{k: given.get(k, "") for k in ("department", "staff", "mobile", "email")})
    if principal.kind == "user":
        user = db.get(User, principal.id)
        if user is not None:
            return edxml.StaffInfo(department="Văn thư", staff=user.full_name, email=user.email or "")
    return edxml.StaffInfo(department="Văn thư", staff=principal.name)


def staff_dict(staff: edxml.StaffInfo) -> dict[str, Any]:
    return {"department": staff.department, "staff": staff.staff, "mobile": staff.mobile, "email": staff.email}


def code_text(code: edxml.Code) -> str:
    return f"{code.number}/{code.notation}" if code.notation else code.number


def header_details(packet: edxml.DocumentPacket) -> dict[str, Any]:
    """The metadata a clerk reads (no file contents), JSON-ready."""
    return {
        "document_id": packet.document_id,
        "from": {"organ_id": packet.sender.organ_id, "name": packet.sender.organ_name},
        "to": [{"organ_id": r.organ_id, "name": r.organ_name} for r in packet.recipients],
        "code": code_text(packet.code),
        "promulgation": {"place": packet.promulgation.place,
                         "date": packet.promulgation.date.isoformat() if packet.promulgation.date else None},
        "document_type": {"type": packet.document_type.type, "detail": packet.document_type.detail,
                          "name": packet.document_type.name},
        "subject": packet.subject, "content": packet.content,
        "signer": {"competence": packet.signer.competence, "position": packet.signer.position,
                   "full_name": packet.signer.full_name},
        "due_date": packet.due_date.isoformat() if packet.due_date else None,
        "priority": int(packet.other.priority), "steering_type": int(packet.steering_type),
        "to_places": list(packet.to_places), "appendixes": list(packet.other.appendixes),
        "business_type": int(packet.business_type),
        "reason": packet.business.reason if packet.business else "",
        "trace": [{"organ_id": t.organ_id, "timestamp": t.timestamp.isoformat()} for t in packet.traces],
    }
