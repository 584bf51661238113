"""The edXML model (QCVN 102:2016): plain frozen dataclasses, no XML here.

Names follow the standard's elements. Dates are :class:`datetime.date`; timestamps are naive
:class:`datetime.datetime` in the sender's local time (the packets carry no zone; Vietnam is +07:00).
Every text field is a ``str`` (empty when the element is absent or empty). Tuples keep the packet's
order, so ``parse(build(x)) == x``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import date, datetime

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"


class BusinessType(enum.IntEnum):
    """``BussinessDocType``: what the packet does to the document it carries."""

    NEW = 0
    REVOKE = 1
    UPDATE = 2
    REPLACE = 3


class Priority(enum.IntEnum):
    NORMAL = 0
    URGENT = 1  # Khẩn
    VERY_URGENT = 2  # Thượng khẩn
    EXPRESS = 3  # Hỏa tốc
    EXPRESS_TIMED = 4  # Hỏa tốc hẹn giờ


class SteeringType(enum.IntEnum):
    NONE = 0
    STEERING = 1  # văn bản chỉ đạo
    REPORT = 2  # báo cáo việc thực hiện chỉ đạo


# StatusCode values (AXIS.md section 3).
STATUS_ARRIVED = "01"
STATUS_REJECTED = "02"
STATUS_ACCEPTED = "03"
STATUS_ASSIGNED = "04"
STATUS_PROCESSING = "05"
STATUS_COMPLETED = "06"
STATUS_TAKE_BACK = "13"
STATUS_AGREED = "15"
STATUS_REFUSED = "16"
STATUS_CODES = frozenset({"01", "02", "03", "04", "05", "06", "13", "15", "16"})


@dataclass(frozen=True)
class Organ:
    """``From`` / ``To``: always emitted with all eight children."""

    organ_id: str
    organization_in_charge: str = ""
    organ_name: str = ""
    organ_add: str = ""
    email: str = ""
    telephone: str = ""
    fax: str = ""
    website: str = ""


@dataclass(frozen=True)
class Code:
    number: str  # CodeNumber, e.g. "07"
    notation: str  # CodeNotation, e.g. "QĐ-UBND"

    def __str__(self) -> str:
        return f"{self.number}/{self.notation}" if self.notation else self.number


@dataclass(frozen=True)
class Promulgation:
    place: str = ""
    date: date | None = None


@dataclass(frozen=True)
class DocumentType:
    type: int = 1  # 1 or 2
    detail: int = 0
    name: str = ""  # TypeName: what receivers rely on, e.g. "Quyết định"


@dataclass(frozen=True)
class SignerInfo:
    competence: str = ""  # TM., KT., TL., TUQ., Q. ...
    position: str = ""
    full_name: str = ""


@dataclass(frozen=True)
class OtherInfo:
    priority: int = Priority.NORMAL
    sphere_of_promulgation: str = ""
    typer_notation: str = ""
    promulgation_amount: int | None = None
    page_amount: int | None = None
    direction: bool = False
    appendixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResponseFor:
    """The document a packet answers, revokes or reports on, named as its original sender did."""

    organ_id: str
    code: str = ""  # "số/ký hiệu", e.g. "7816/VPCP-TTĐT"
    promulgation_date: date | None = None
    document_id: str = ""


@dataclass(frozen=True)
class Trace:
    """One hop in ``TraceHeaderList``; the axis appends its own."""

    organ_id: str
    timestamp: datetime


@dataclass(frozen=True)
class StaffInfo:
    department: str = ""
    staff: str = ""
    mobile: str = ""
    email: str = ""


@dataclass(frozen=True)
class Receiver:
    organ_id: str
    receiver_type: int = 0


@dataclass(frozen=True)
class UpdateInfo:
    """``BussinessDocumentInfo`` of an update packet."""

    document_info: str = ""
    document_receiver: str = ""
    receivers: tuple[Receiver, ...] = ()


@dataclass(frozen=True)
class Replacement:
    """``ReplacementInfo`` of a replace packet: the document replaced and for whom."""

    document_id: str
    organ_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Business:
    """``Bussiness`` (spelled so in the standard)."""

    document_id: str
    doc_type: BusinessType = BusinessType.NEW
    reason: str = ""
    paper: bool = False
    staff: StaffInfo | None = None
    update: UpdateInfo | None = None
    replacements: tuple[Replacement, ...] = ()


@dataclass(frozen=True)
class Attachment:
    """One attached file. ``content_id`` without the ``cid:`` prefix (the builder adds it)."""

    content_id: str
    name: str
    content_type: str
    data: bytes = field(repr=False)
    description: str = ""


@dataclass(frozen=True)
class DocumentPacket:
    """A document packet (new, revoke, update or replace: see ``business.doc_type``)."""

    sender: Organ
    recipients: tuple[Organ, ...]
    document_id: str
    code: Code
    promulgation: Promulgation = Promulgation()
    document_type: DocumentType = DocumentType()
    subject: str = ""
    content: str = ""
    signer: SignerInfo = SignerInfo()
    due_date: date | None = None
    other: OtherInfo = OtherInfo()
    response_for: tuple[ResponseFor, ...] = ()
    steering_type: int = SteeringType.NONE
    to_places: tuple[str, ...] = ()
    traces: tuple[Trace, ...] = ()
    business: Business | None = None
    attachments: tuple[Attachment, ...] = ()
    # The header's optional XMLDSig-shaped ``Signature`` element, kept verbatim (often a placeholder;
    # any hop breaks it since the axis appends a TraceHeader). Empty: no element.
    signature_xml: str = ""

    @property
    def business_type(self) -> BusinessType:
        return self.business.doc_type if self.business else BusinessType.NEW


@dataclass(frozen=True)
class StatusPacket:
    """A status packet: only From, ResponseFor, StaffInfo, StatusCode, Description, Timestamp."""

    sender: Organ
    response_for: ResponseFor
    status_code: str
    timestamp: datetime
    description: str = ""
    staff: StaffInfo = StaffInfo()


Packet = DocumentPacket | StatusPacket
