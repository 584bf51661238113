"""Tables of the exchange over the axis: accounts, outgoing documents and their per-recipient
outbox, status history, incoming documents.

The database is the truth: a job carries only an outbox or account id, and a sweeper re-enqueues
whatever a lost Redis or a dead worker left behind.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from signer.models import Base, new_id, utcnow


class OutboxState(enum.StrEnum):
    PENDING = "pending"  # waiting for (another) delivery attempt
    SENDING = "sending"  # leased by an exchange worker
    SENT = "sent"  # the axis took it (axis_doc_id set)
    DEAD = "dead"  # gave up after the configured attempts, or the axis refused it: see last_error


class IncomingState(enum.StrEnum):
    RECEIVED = "received"  # stored, 01 sent; the clerk has not acted
    REJECTED = "rejected"  # 02 (by the clerk, or automatically: broken signature)
    ACCEPTED = "accepted"  # 03
    ASSIGNED = "assigned"  # 04
    PROCESSING = "processing"  # 05
    COMPLETED = "completed"  # 06
    REVOKED = "revoked"  # the sender revoked it and the clerk accepted (03 to the revoke)
    WITHDRAWN = "withdrawn"  # the sender took it back (13) and the clerk agreed (15)


class AxisAccount(Base):
    """An organisation's identity on the axis: its system id and shared secret (sealed)."""

    __tablename__ = "axis_accounts"

    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), primary_key=True)
    system_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_sealed: Mapped[str] = mapped_column(Text)  # SecretBox("axis")
    endpoint: Mapped[str | None] = mapped_column(String(2048))  # None: the deployment's axis_url
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Outgoing(Base):
    """One packet's worth of business sent by an organisation: a new document, or a revoke /
    update / replace of an earlier one. Its recipients are its outbox items."""

    __tablename__ = "exchange_outgoing"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    sign_request_id: Mapped[str | None] = mapped_column(ForeignKey("sign_requests.id"), index=True)
    previous_id: Mapped[str | None] = mapped_column(ForeignKey("exchange_outgoing.id"), index=True)
    document_id: Mapped[str] = mapped_column(String(255), index=True)  # edXML DocumentId
    business_type: Mapped[int] = mapped_column(Integer, default=0)
    code: Mapped[str] = mapped_column(String(64))  # "số/ký hiệu"
    subject: Mapped[str] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)  # the edXML fields as sent (no contents)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    items: Mapped[list[OutboxItem]] = relationship(
        back_populates="outgoing", order_by="OutboxItem.recipient", foreign_keys="OutboxItem.outgoing_id")


class OutboxItem(Base):
    """One packet for one recipient: a document packet (``outgoing_id``) or a status packet
    answering an incoming document (``incoming_id``). Delivered by the exchange worker."""

    __tablename__ = "exchange_outbox"
    __table_args__ = (Index("ix_exchange_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # "edoc" or "status"
    outgoing_id: Mapped[str | None] = mapped_column(ForeignKey("exchange_outgoing.id"), index=True)
    incoming_id: Mapped[str | None] = mapped_column(ForeignKey("exchange_incoming.id"), index=True)
    status_code: Mapped[str | None] = mapped_column(String(2))  # of a status packet
    recipient: Mapped[str] = mapped_column(String(64))
    packet_blob: Mapped[str] = mapped_column(String(80))
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column()
    axis_doc_id: Mapped[str | None] = mapped_column(String(128), index=True)
    sent_at: Mapped[datetime | None] = mapped_column()
    # The recipient's latest answer (status packets received for this document).
    status: Mapped[str | None] = mapped_column(String(2))
    status_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    outgoing: Mapped[Outgoing | None] = relationship(back_populates="items", foreign_keys=[outgoing_id])


class StatusEvent(Base):
    """A status packet received about one of our outgoing documents: the trace history."""

    __tablename__ = "exchange_status_events"
    __table_args__ = (UniqueConstraint("organisation_id", "axis_doc_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    outbox_id: Mapped[str | None] = mapped_column(ForeignKey("exchange_outbox.id"), index=True)
    axis_doc_id: Mapped[str] = mapped_column(String(128))
    document_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(64))  # the recipient of our document answering
    status_code: Mapped[str] = mapped_column(String(2))
    description: Mapped[str] = mapped_column(Text, default="")
    staff: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column()  # the packet's timestamp (+07:00, stored UTC)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Incoming(Base):
    """A document received from the axis for one of our organisations, stored once per
    (recipient organisation, sender, DocumentId)."""

    __tablename__ = "exchange_incoming"
    __table_args__ = (UniqueConstraint("organisation_id", "sender", "document_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    sender: Mapped[str] = mapped_column(String(64))
    document_id: Mapped[str] = mapped_column(String(255))
    axis_doc_id: Mapped[str] = mapped_column(String(128))
    packet_blob: Mapped[str] = mapped_column(String(80))
    code: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)  # header fields, files (blob keys), trace
    verification: Mapped[dict[str, Any]] = mapped_column(JSON)  # per file, per signature
    verdict: Mapped[str] = mapped_column(String(16))  # valid | invalid | indeterminate
    state: Mapped[str] = mapped_column(String(16), default=IncomingState.RECEIVED.value, index=True)
    status_code: Mapped[str | None] = mapped_column(String(2))  # the latest status we sent
    # A revoke, update, replace or take-back (13) from the sender, waiting for the clerk's answer.
    pending_action: Mapped[str | None] = mapped_column(String(16))
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AxisUnit(Base):
    """The axis directory of connected units, synchronised by the scheduler: recipients are
    checked against it before anything is queued."""

    __tablename__ = "axis_units"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(500))
    mail: Mapped[str] = mapped_column(String(255), default="")
    parent_code: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
