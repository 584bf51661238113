"""Response models of ``/v1/exchange`` for the OpenAPI description (:mod:`signer.api.openapi`).

They mirror the plain dicts :mod:`signer.api.exchange` builds (``outgoing_view``, ``_item_view``,
``incoming_view``) and :func:`signer.interchange.reports.monthly`; nothing validates with them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel

from signer.api.exchange import TakeBackBody
from signer.api.verify import SignatureOut, SummaryOut
from signer.interchange.models import IncomingState, OutboxState
from signer.interchange.sending import FollowUpBody

STATUS_CODE = r"^\d{2}$"
FollowUpKind = Literal["revoke", "update", "replace", "take-back"]


class FollowUpIn(RootModel[FollowUpBody | TakeBackBody]):
    """`revoke`, `update`, `replace`: a FollowUpBody (`update` and `replace` name the completed sign
    request of the new version in `sign_request_id`); `take-back`: a TakeBackBody (only `reason`)."""


class StatusEventOut(BaseModel):
    """A status packet a recipient sent about the document (its trace history)."""

    code: str = Field(pattern=STATUS_CODE, description="01 arrived, 02 rejected, 03 accepted, 04 assigned, "
                                                       "05 processing, 06 completed, 15 agreed, 16 refused")
    description: str
    at: datetime = Field(description="the packet's timestamp")
    staff: dict[str, str] = Field(description="who answered: `department`, `staff`")


class RecipientOut(BaseModel):
    """One recipient of an outgoing document: its outbox row (delivery) and its latest answer."""

    id: str = Field(description="the outbox row (`POST /v1/exchange/outbox/{item_id}/retry` once dead)")
    recipient: str = Field(description="the recipient's organ id (QCVN 102)")
    kind: Literal["edoc"]
    state: OutboxState = Field(description="delivery to the axis: pending, sending, sent or dead")
    attempts: int
    last_error: str | None = Field(description="why the last attempt failed (dead rows keep it)")
    axis_doc_id: str | None = Field(description="the axis's id of the packet, once sent")
    sent_at: datetime | None
    status: str | None = Field(description="the recipient's latest status code")
    status_at: datetime | None
    history: list[StatusEventOut] = Field(description="every status received, oldest first")


class StatusRequestOut(BaseModel):
    """A status packet we send about the document: a take-back request (13) to one recipient."""

    id: str = Field(description="the outbox row")
    recipient: str
    code: str | None = Field(description="the status code sent (13)")
    state: OutboxState


class OutgoingOut(BaseModel):
    """A document sent over the axis (or a revoke, update or replace of one), per recipient."""

    id: str
    organisation_id: str
    document_id: str = Field(description="edXML DocumentId")
    code: str = Field(description="số/ký hiệu, e.g. `07/QĐ-UBND`")
    subject: str
    business_type: int = Field(ge=0, le=3, description="0 new, 1 revoke, 2 update, 3 replace")
    sign_request_id: str | None = Field(description="the sign request whose signed PDFs went out (none: revoke)")
    previous_id: str | None = Field(description="follow-ups: the original outgoing document")
    created_by: str
    created_at: datetime
    details: dict[str, Any] = Field(description=(
        "the edXML fields as sent: `promulgation_date`, `document_type` {type, detail, name}, `signer` "
        "{competence, position, full_name}, `priority`, `steering_type`, `files` [{name, size}], `staff` "
        "{department, staff, mobile, email}; follow-ups add `reason`"))
    recipients: list[RecipientOut]
    follow_ups: list[OutgoingOut] = Field(description="revokes, updates and replaces of this document, oldest first")
    status_requests: list[StatusRequestOut] = Field(description="take-back requests (13) sent per recipient")


class IncomingSummaryOut(BaseModel):
    """A document received from the axis (list entry)."""

    id: str
    organisation_id: str = Field(description="the receiving organisation")
    sender: str = Field(description="the sender's organ id (QCVN 102)")
    document_id: str = Field(description="edXML DocumentId")
    code: str
    subject: str
    state: IncomingState
    verdict: Literal["valid", "invalid", "indeterminate"] = Field(
        description="of the signature check on arrival; invalid documents are rejected (02) automatically")
    status_code: str | None = Field(description="the latest status we sent to the sender")
    pending_action: FollowUpKind | None = Field(
        description="a follow-up from the sender waiting for the clerk's answer: a revoke is answered 03 or 02; "
                    "an update, replace or take-back 15 or 16")
    received_at: datetime


class IncomingFileOut(BaseModel):
    """A received file; download it at `files/{position}`."""

    name: str
    content_type: str
    size: int
    sha256: str
    position: int


class FileVerificationOut(BaseModel):
    """The check of one received file: PDFs are verified, other files only listed."""

    name: str
    verified: bool = Field(description="false: not a PDF, or an unreadable one (`error`)")
    summary: SummaryOut | None = None
    signatures: list[SignatureOut] | None = None
    error: str | None = None


class VerificationOut(BaseModel):
    """The verification report of the document's files on arrival."""

    files: list[FileVerificationOut] = []


class PendingOut(BaseModel):
    """The follow-up waiting for an answer."""

    reason: str = Field(description="the sender's reason")


class IncomingOut(IncomingSummaryOut):
    """A document received from the axis, with its metadata, files and verification report."""

    details: dict[str, Any] = Field(description=(
        "the edXML header: `document_id`, `from` {organ_id, name}, `to` [{organ_id, name}], `code`, "
        "`promulgation` {place, date}, `document_type` {type, detail, name}, `subject`, `content`, `signer` "
        "{competence, position, full_name}, `due_date`, `priority`, `steering_type`, `to_places`, "
        "`appendixes`, `business_type`, `reason`, `trace` [{organ_id, timestamp}]; after an answered "
        "follow-up `follow_ups` [{action, reason, answer, description}]"))
    files: list[IncomingFileOut]
    verification: VerificationOut
    pending: PendingOut | None


class OutboxRetryOut(BaseModel):
    """The outbox row, queued again."""

    id: str
    state: OutboxState


class ReportOrganisationOut(BaseModel):
    id: str
    code: str
    name: str


class RecipientClassOut(BaseModel):
    """Deliveries to one class of recipients (level-1 group letter: G central, H provincial)."""

    documents: int = Field(description="packets (document x recipient)")
    signed: int
    label: str
    signed_share: float | None


class SentReportOut(BaseModel):
    documents: int = Field(description="new documents sent (follow-ups not counted)")
    deliveries: int = Field(description="document x recipient")
    delivery_states: dict[str, int] = Field(description="deliveries per outbox state")
    statuses: dict[str, int] = Field(description="deliveries per latest status code (`none`: no answer yet)")
    signed_share: float | None = Field(description="share of documents sent signed (null: none sent)")
    by_recipient_class: dict[str, RecipientClassOut] = Field(description="by class letter (G, H, ...)")


class ReceivedReportOut(BaseModel):
    documents: int
    verdicts: dict[str, int] = Field(description="per verdict: valid, invalid, indeterminate")
    states: dict[str, int] = Field(description="per incoming state")
    signed_share: float | None = Field(description="share not found invalid (null: none received)")
    statuses_sent: dict[str, int] = Field(description="status packets we sent, per code")


class MonthlyReportOut(BaseModel):
    """One organisation's exchange in one month (Vietnamese calendar month, UTC+07:00)."""

    organisation: ReportOrganisationOut
    month: str = Field(pattern=r"^\d{4}-\d{2}$")
    signed_documents: int = Field(description="documents signed in the month")
    sent: SentReportOut
    received: ReceivedReportOut


class UnitOut(BaseModel):
    """A unit connected to the axis."""

    code: str = Field(description="organ id (QCVN 102)")
    name: str
    mail: str
    parent_code: str | None
