"""Models of the signing pipeline: devices, sign requests and their documents, approvals,
credential images, built-in PKI authorities and CRLs, webhook deliveries."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, event
from sqlalchemy.orm import Mapped, mapped_column, object_session, relationship

from signer.models import Base, Credential, new_id, utcnow


class RequestState(enum.StrEnum):
    PREPARING = "PREPARING"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    SIGNING = "SIGNING"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"

    @property
    def final(self) -> bool:
        return self not in (RequestState.PREPARING, RequestState.AWAITING_APPROVAL, RequestState.SIGNING)


class Result(enum.StrEnum):
    """What the document system is told, as DESIGN.md section 5 names it."""

    OK = "OK"
    USER_REFUSED = "USER_REFUSED"
    TIMEOUT = "TIMEOUT"
    WRONG_VC = "WRONG_VC"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


class Reason(enum.StrEnum):
    """Why a request or document did not end OK (machine-readable, stable)."""

    APPROVAL_INVALID = "APPROVAL_INVALID"  # device signature does not verify over the challenge
    APPROVAL_MISMATCH = "APPROVAL_MISMATCH"  # approval made for another challenge (other hashes)
    APPROVAL_REPLAYED = "APPROVAL_REPLAYED"  # this device signature was already used
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"  # approval arrived or was processed after expiry
    DEVICE_NOT_ALLOWED = "DEVICE_NOT_ALLOWED"  # disabled, foreign or unauthorised device
    DOCUMENT_ALTERED = "DOCUMENT_ALTERED"  # prepared bytes changed after approval
    CREDENTIAL_UNUSABLE = "CREDENTIAL_UNUSABLE"  # revoked, suspended, expired or without certificate
    HSM_ERROR = "HSM_ERROR"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class DocState(enum.StrEnum):
    READY = "READY"  # prepared, waiting for approval
    SIGNING = "SIGNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class DocKind(enum.StrEnum):
    PDF = "pdf"  # PAdES
    CMS = "cms"  # detached CMS / CAdES over any file
    HASH = "hash"  # sign-hash: a bare digest from the document system


class DeviceKind(enum.StrEnum):
    PASSKEY = "webauthn"  # a WebAuthn platform authenticator, user verification required
    APP_KEY = "app_key"  # an ECDSA P-256 key in a native app or SIM applet, plus a PIN the service checks


class DeviceStatus(enum.StrEnum):
    PENDING = "pending"  # registered from an enrolment link, waiting for an admin's approval
    ACTIVE = "active"
    DISABLED = "disabled"  # by its holder or an admin; re-enabled by an admin
    LOCKED = "locked"  # too many wrong PINs; an admin unlocks it


class Device(Base):
    """A holder's approval device: a WebAuthn passkey or an app key with a PIN."""

    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(120))
    public_key_der: Mapped[bytes | None] = mapped_column(LargeBinary)  # app key: SubjectPublicKeyInfo
    credential_id: Mapped[str | None] = mapped_column(String(1400), unique=True)  # passkey, base64url
    public_key_cose: Mapped[bytes | None] = mapped_column(LargeBinary)  # passkey
    pin_hash: Mapped[str | None] = mapped_column(String(255))  # app key: Argon2id
    failed_pins: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default=DeviceStatus.ACTIVE.value)
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    approved_by: Mapped[str | None] = mapped_column(String(80))  # actor ref
    approved_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Enrolment(Base):
    """A one-time link (or QR code) with which a person registers one device."""

    __tablename__ = "enrolments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(80))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str | None] = mapped_column(String(16))  # None: either kind
    expires_at: Mapped[datetime] = mapped_column()
    webauthn_challenge: Mapped[bytes | None] = mapped_column(LargeBinary)  # of the pending ceremony
    used_at: Mapped[datetime | None] = mapped_column()
    device_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignRequest(Base):
    __tablename__ = "sign_requests"
    __table_args__ = (UniqueConstraint("api_client_id", "idempotency_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    api_client_id: Mapped[str] = mapped_column(ForeignKey("api_clients.id"), index=True)
    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id"), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    result: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    callback_url: Mapped[str | None] = mapped_column(String(2048))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    body_sha256: Mapped[str] = mapped_column(String(64))
    challenge: Mapped[str] = mapped_column(String(64))
    verification_code: Mapped[str] = mapped_column(String(4))
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column()
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)  # approved or refused
    decided_at: Mapped[datetime | None] = mapped_column()

    credential: Mapped[Credential] = relationship()
    documents: Mapped[list[SignDocument]] = relationship(
        back_populates="request", order_by="SignDocument.position", cascade="all, delete-orphan"
    )


class SignDocument(Base):
    __tablename__ = "sign_documents"
    __table_args__ = (UniqueConstraint("request_id", "position"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("sign_requests.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(255))
    profile: Mapped[str | None] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(8))
    params: Mapped[str] = mapped_column(Text, default="{}")  # canonical JSON of appearance/metadata
    content_sha256: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    page_count: Mapped[int | None] = mapped_column(Integer)
    original_blob: Mapped[str | None] = mapped_column(String(80))
    prepared_blob: Mapped[str | None] = mapped_column(String(80))
    output_blob: Mapped[str | None] = mapped_column(String(80))
    signature: Mapped[bytes | None] = mapped_column(LargeBinary)  # sign-hash output, kept inline
    md_algorithm: Mapped[str] = mapped_column(String(8))
    document_digest: Mapped[str | None] = mapped_column(String(128))  # PDF byte-range / file digest
    reserved_start: Mapped[int | None] = mapped_column(Integer)
    reserved_end: Mapped[int | None] = mapped_column(Integer)
    signed_attrs: Mapped[bytes | None] = mapped_column(LargeBinary)  # DER; absent for sign-hash
    dtbsr: Mapped[str] = mapped_column(String(128))  # what the HSM signs and the holder approves
    signing_time: Mapped[str | None] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16), default=DocState.READY.value)
    reason: Mapped[str | None] = mapped_column(String(32))
    lease_until: Mapped[datetime | None] = mapped_column()
    lease_token: Mapped[str | None] = mapped_column(String(36))
    completed_at: Mapped[datetime | None] = mapped_column()

    request: Mapped[SignRequest] = relationship(back_populates="documents")


class Approval(Base):
    """A holder's device signature over a request's challenge; consumed once by the hsm worker."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("sign_requests.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    challenge: Mapped[str] = mapped_column(String(64))  # as the approver claims it; recomputed later
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    signature_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # Passkeys sign authenticatorData || SHA-256(clientDataJSON), which carries the challenge.
    authenticator_data: Mapped[bytes | None] = mapped_column(LargeBinary)
    client_data_json: Mapped[bytes | None] = mapped_column(LargeBinary)
    verification_code: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consumed_at: Mapped[datetime | None] = mapped_column()


class CredentialImage(Base):
    """The signature image (leader) or seal image (organisation) drawn in visible signatures."""

    __tablename__ = "credential_images"

    credential_id: Mapped[str] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"),
                                               primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # "signature" or "seal"
    blob: Mapped[str] = mapped_column(String(80))
    sha256: Mapped[str] = mapped_column(String(64))
    width_mm: Mapped[int | None] = mapped_column(Integer)
    uploaded_at: Mapped[datetime] = mapped_column(default=utcnow)


class PkiAuthority(Base):
    """A key of the built-in PKI held in the HSM: root, issuing CA, TSA or OCSP responder."""

    __tablename__ = "pki_authorities"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    key_label: Mapped[str] = mapped_column(String(64))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    issuer_id: Mapped[str | None] = mapped_column(ForeignKey("pki_authorities.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IssuedCertificate(Base):
    """Every certificate the service knows about: issued by the built-in CA, or imported. CRLs and
    (later) OCSP answers come from this table."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("issuer_sha256", "serial"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    credential_id: Mapped[str | None] = mapped_column(ForeignKey("credentials.id"), index=True)
    authority_id: Mapped[str | None] = mapped_column(ForeignKey("pki_authorities.id"), index=True)  # built-in
    issuer_sha256: Mapped[str] = mapped_column(String(64))  # of the issuer's DER name
    serial: Mapped[str] = mapped_column(String(64))  # lower-case hex
    subject: Mapped[str] = mapped_column(String(1024))
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column()
    not_after: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(16), default="good")  # good | revoked
    revoked_at: Mapped[datetime | None] = mapped_column()
    revocation_reason: Mapped[str | None] = mapped_column(String(32))  # RFC 5280 name, e.g. keyCompromise
    invalidity_date: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # builtin (issued here) | external (Government CA, key in our HSM) | inventory (key elsewhere:
    # USB token, SIM; imported for expiry tracking only)
    source: Mapped[str] = mapped_column(String(16), default="builtin")
    organisation_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    holder: Mapped[str | None] = mapped_column(String(255))  # inventory: who holds the token/SIM
    # Smallest expiry-notice threshold (days: 60, 30, 7) already sent; NULL when none yet.
    notified_days: Mapped[int | None] = mapped_column(Integer)


class Crl(Base):
    __tablename__ = "crls"
    __table_args__ = (UniqueConstraint("authority_id", "number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    authority_id: Mapped[str] = mapped_column(ForeignKey("pki_authorities.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    this_update: Mapped[datetime] = mapped_column()
    next_update: Mapped[datetime] = mapped_column()


class OcspResponse(Base):
    """A pre-signed OCSP response for one certificate of the built-in CA (RFC 6960, DER), signed by
    the hsm worker with the delegated responder key and served as is by the web tier."""

    __tablename__ = "ocsp_responses"

    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id"), primary_key=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    cert_status: Mapped[str] = mapped_column(String(16))  # good | revoked, as signed
    this_update: Mapped[datetime] = mapped_column()
    next_update: Mapped[datetime] = mapped_column(index=True)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    request_id: Mapped[str] = mapped_column(ForeignKey("sign_requests.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


@event.listens_for(SignRequest.state, "set")
def _announce_state(target: SignRequest, value: str, oldvalue: Any, _initiator: Any) -> None:
    # Every state change, wherever it is made (web, hsm worker, scheduler), wakes the request's
    # long polls once committed; a new request has no session or id yet and no one waiting.
    session = object_session(target)
    if session is not None and target.id is not None and value != oldvalue:
        from signer.signing import dispatch

        dispatch.announce_after_commit(session, target.id, value)
