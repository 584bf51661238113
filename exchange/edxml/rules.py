"""Send-side rules: what we check before a document packet leaves us.

On receipt we are lenient (see the parser); on send we are strict: strict organ codes, the field
limits of QCVN 102:2016 as best known (the axis itself does not seem to enforce them, but receivers'
databases may truncate or refuse), the enumerations, and the DocumentId convention.
"""

from __future__ import annotations

from datetime import date

from exchange import organ_id
from exchange.edxml.builder import format_date
from exchange.edxml.model import BusinessType, Code, DocumentPacket, Priority, SteeringType
from exchange.errors import PacketError

# Field -> maximum length in characters.
LIMITS = {
    "CodeNumber": 11,
    "CodeNotation": 30,
    "PromulgationInfo.Place": 50,
    "TypeName": 100,
    "Subject": 500,
    "Content": 500,
    "TyperNotation": 10,
    "Appendix": 250,
    "ToPlaces.Place": 150,
}


def document_id(sender: str, day: date, code: Code) -> str:
    """The conventional DocumentId: ``<sender OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>``, e.g.
    ``000.00.00.G22,2015/09/30,7816/VPCP-TTĐT``. ``sender`` must be a strict organ code."""
    _strict("sender", sender)
    return f"{sender},{format_date(day)},{code}"


def _strict(what: str, code: str) -> None:
    if not code.strip():
        raise PacketError("invalid-value", f"{what} has an empty OrganId")
    try:
        organ_id.validate(code)
    except organ_id.InvalidOrganId as exc:
        raise PacketError("invalid-value", f"{what} OrganId: {exc}") from exc


def _limit(field: str, value: str) -> None:
    limit = LIMITS[field]
    if len(value) > limit:
        raise PacketError("invalid-value", f"{field} is {len(value)} characters long; at most {limit} allowed")


def _in_range(field: str, value: int, allowed: range) -> None:
    if value not in allowed:
        raise PacketError("invalid-value", f"{field} must be {allowed.start}..{allowed.stop - 1}, not {value!r}")


def validate_for_sending(packet: DocumentPacket) -> None:
    """Raise :class:`PacketError` (``invalid-value``, the message names the field) unless ``packet``
    may be sent: strict organ codes for the sender and every recipient, at least one recipient, none
    empty or repeated, a non-empty DocumentId, the field limits in :data:`LIMITS`, Priority 0..4,
    SteeringType 0..2, DocumentType.Type 1 or 2, and at least one attachment for a new document.

    Checking recipients against the axis directory is the caller's business (it needs the cache).
    """
    _strict("sender (From)", packet.sender.organ_id)
    if not packet.recipients:
        raise PacketError("invalid-value", "recipients (To): at least one recipient is required")
    seen: set[str] = set()
    for number, recipient in enumerate(packet.recipients, 1):
        _strict(f"recipient {number} (To)", recipient.organ_id)
        if recipient.organ_id in seen:
            raise PacketError("invalid-value", f"recipient {number} (To): {recipient.organ_id} is listed twice")
        seen.add(recipient.organ_id)
    if not packet.document_id.strip():
        raise PacketError("invalid-value", "DocumentId is empty")
    _limit("CodeNumber", packet.code.number)
    _limit("CodeNotation", packet.code.notation)
    _limit("PromulgationInfo.Place", packet.promulgation.place)
    _limit("TypeName", packet.document_type.name)
    _limit("Subject", packet.subject)
    _limit("Content", packet.content)
    _limit("TyperNotation", packet.other.typer_notation)
    for appendix in packet.other.appendixes:
        _limit("Appendix", appendix)
    for place in packet.to_places:
        _limit("ToPlaces.Place", place)
    _in_range("OtherInfo.Priority", packet.other.priority, range(min(Priority), max(Priority) + 1))
    _in_range("SteeringType", packet.steering_type, range(min(SteeringType), max(SteeringType) + 1))
    _in_range("DocumentType.Type", packet.document_type.type, range(1, 3))
    if packet.business_type == BusinessType.NEW and not packet.attachments:
        raise PacketError("invalid-value", "attachments: a new document needs at least one attachment")
