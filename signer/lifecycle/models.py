"""Tables of the certificate lifecycle: requests and their items, approvers' decisions, approval
policies and profiles (both data, editable by admins)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from signer.models import Base, new_id, utcnow


class Action(enum.StrEnum):
    ISSUE = "issue"  # new HSM key + certificate
    RENEW = "renew"  # same key, new certificate (built-in CA; external where the CA allows)
    REKEY = "rekey"  # new HSM key + new certificate; the old one is revoked as superseded
    REVOKE = "revoke"
    SUSPEND = "suspend"  # blocks signing here; the built-in CA also publishes certificateHold
    RESUME = "resume"


class RequestStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for approvals
    APPROVED = "approved"  # queued for the hsm worker
    EXECUTING = "executing"
    AWAITING_CERTIFICATE = "awaiting_certificate"  # external CA: CSR out, certificate not yet imported
    COMPLETED = "completed"  # every item done (some may have failed: see items)
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.REJECTED,
                        RequestStatus.EXPIRED, RequestStatus.CANCELLED)


class CertificateRequest(Base):
    """One lifecycle request; bulk requests have many items and one approval."""

    __tablename__ = "certificate_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    action: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24), default=RequestStatus.PENDING.value, index=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    profile: Mapped[str | None] = mapped_column(String(64))  # certificate profile (issue/renew/rekey)
    subject_profile: Mapped[str | None] = mapped_column(String(64))
    ca: Mapped[str] = mapped_column(String(16), default="builtin")  # builtin | external
    # Action parameters: subject fields, key spec, credential name/kind/owner, reason, invalidity date.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str] = mapped_column(String(80))  # actor ref, e.g. user:<id>
    requester_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    approvals_required: Mapped[int] = mapped_column(Integer)
    approver_roles: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column()
    completed_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)

    items: Mapped[list[CertificateRequestItem]] = relationship(
        back_populates="request", order_by="CertificateRequestItem.position", cascade="all, delete-orphan")
    decisions: Mapped[list[CertificateDecision]] = relationship(
        back_populates="request", order_by="CertificateDecision.at", cascade="all, delete-orphan")


class CertificateRequestItem(Base):
    """One credential a request acts on (or creates), with its own outcome."""

    __tablename__ = "certificate_request_items"
    __table_args__ = (UniqueConstraint("request_id", "position"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("certificate_requests.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    credential_id: Mapped[str | None] = mapped_column(ForeignKey("credentials.id"), index=True)
    certificate_id: Mapped[str | None] = mapped_column(ForeignKey("certificates.id"))  # the result, if any
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | done | failed | awaiting
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_label: Mapped[str | None] = mapped_column(String(64))  # new HSM key (issue/rekey)
    error: Mapped[str | None] = mapped_column(Text)

    request: Mapped[CertificateRequest] = relationship(back_populates="items")


class CertificateDecision(Base):
    __tablename__ = "certificate_decisions"
    __table_args__ = (UniqueConstraint("request_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("certificate_requests.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(8))  # approve | reject
    comment: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    request: Mapped[CertificateRequest] = relationship(back_populates="decisions")


class ApprovalPolicy(Base):
    """How many approvers, from which roles, an action needs; ``profile`` '*' is the default."""

    __tablename__ = "approval_policies"
    __table_args__ = (UniqueConstraint("action", "profile"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    action: Mapped[str] = mapped_column(String(16))
    profile: Mapped[str] = mapped_column(String(64), default="*")
    approvals_required: Mapped[int] = mapped_column(Integer)
    roles: Mapped[list[str]] = mapped_column(JSON)
    ttl_hours: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProfileDocument(Base):
    """A certificate or subject profile as data (JSON); overrides the built-in one of that name."""

    __tablename__ = "pki_profiles"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # certificate | subject
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
