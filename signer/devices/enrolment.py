"""Enrolment: an admin or RA officer creates a one-time link for a leader or clerk; the person
registers a passkey or an app key with it; an admin (another person than the holder) approves the
device before it can approve anything. Every step is audited."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select
from sqlalchemy.orm import Session

from signer import audit
from signer.authz import require_organisation, require_roles
from signer.devices import passkeys, pins
from signer.errors import Conflict, Forbidden, InvalidInput, NotFound
from signer.models import Role, User
from signer.principal import Principal
from signer.security import Passwords
from signer.signing.models import Device, DeviceKind, DeviceStatus, Enrolment

LINK_MAKERS = frozenset({Role.ADMIN, Role.RA_OFFICER})
APPROVERS = frozenset({Role.ADMIN})
HOLDER_ROLES = frozenset({Role.LEADER, Role.CLERK})
TOKEN_PREFIX = "enr_"  # noqa: S105 - a prefix that makes leaked links recognisable, not a secret


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewLink:
    enrolment: Enrolment
    token: str  # shown once (link or QR code); only its SHA-256 is stored


def create_link(session: Session, actor: Principal, *, user_id: str, kind: DeviceKind | None,
                ttl: timedelta) -> NewLink:
    require_roles(actor, LINK_MAKERS, "creating an enrolment link")
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise NotFound("user not found")
    require_organisation(session, actor, user.organisation_id, "user")
    if not HOLDER_ROLES & set(user.roles):
        raise InvalidInput("devices are for leaders and clerks", field="user_id")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    enrolment = Enrolment(user_id=user.id, created_by=actor.ref, token_sha256=_hash(token),
                          kind=kind.value if kind else None, expires_at=datetime.now(UTC) + ttl)
    session.add(enrolment)
    session.flush()
    audit.record(session, actor=actor.ref, action="enrolment.create", target=f"enrolment:{enrolment.id}",
                 organisation_id=user.organisation_id,
                 detail={"user_id": user.id, "kind": enrolment.kind or "any",
                         "expires_at": enrolment.expires_at.isoformat()})
    return NewLink(enrolment, token)


def open_link(session: Session, token: str, kind: DeviceKind | None = None) -> tuple[Enrolment, User]:
    """The unused, unexpired enrolment behind ``token`` (404 for anything else: no oracle)."""
    enrolment = session.scalar(select(Enrolment).where(Enrolment.token_sha256 == _hash(token)))
    if enrolment is None or enrolment.used_at is not None or _aware(enrolment.expires_at) <= datetime.now(UTC):
        raise NotFound("this enrolment link is unknown, used or expired")
    if kind is not None and enrolment.kind not in (None, kind.value):
        raise InvalidInput(f"this link enrols a {enrolment.kind} device")
    user = session.get(User, enrolment.user_id)
    if user is None or not user.active:
        raise NotFound("this enrolment link is unknown, used or expired")
    return enrolment, user


def _finish(session: Session, enrolment: Enrolment, user: User, device: Device) -> Device:
    session.add(device)
    session.flush()
    enrolment.used_at, enrolment.device_id, enrolment.webauthn_challenge = datetime.now(UTC), device.id, None
    audit.record(session, actor=f"user:{user.id}", action="device.enrol", target=f"device:{device.id}",
                 organisation_id=user.organisation_id,
                 detail={"enrolment_id": enrolment.id, "kind": device.kind, "name": device.name})
    return device


def register_app_key(session: Session, passwords: Passwords, token: str, *, name: str,
                     public_key_der: bytes, pin: str) -> Device:
    enrolment, user = open_link(session, token, DeviceKind.APP_KEY)
    try:
        key = load_der_public_key(public_key_der)
    except ValueError:
        raise InvalidInput("public_key is not a DER SubjectPublicKeyInfo", field="public_key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidInput("an app key must be ECDSA P-256", field="public_key")
    device = Device(user_id=user.id, kind=DeviceKind.APP_KEY.value, name=name.strip()[:120],
                    public_key_der=public_key_der, status=DeviceStatus.PENDING.value)
    pins.set_pin(passwords, device, pin)
    return _finish(session, enrolment, user, device)


def passkey_options(session: Session, token: str, rp: passkeys.RelyingParty) -> str:
    """Start the WebAuthn registration ceremony (the challenge is kept with the enrolment)."""
    enrolment, user = open_link(session, token, DeviceKind.PASSKEY)
    enrolment.webauthn_challenge = secrets.token_bytes(32)
    existing = [d.credential_id for d in session.scalars(select(Device).where(Device.user_id == user.id))
                if d.credential_id]
    return passkeys.registration_options(rp, user_id=user.id, user_name=user.username,
                                         display_name=user.full_name, challenge=enrolment.webauthn_challenge,
                                         exclude=existing)


def register_passkey(session: Session, token: str, rp: passkeys.RelyingParty, *, name: str,
                     credential: dict[str, Any]) -> Device:
    enrolment, user = open_link(session, token, DeviceKind.PASSKEY)
    if enrolment.webauthn_challenge is None:
        raise InvalidInput("ask for the registration options first")
    try:
        registered = passkeys.verify_registration(rp, credential, enrolment.webauthn_challenge)
    except passkeys.PasskeyError as exc:
        raise InvalidInput(str(exc), field="credential") from None
    if session.scalar(select(Device.id).where(Device.credential_id == registered.credential_id)):
        raise Conflict("this passkey is already registered")
    device = Device(user_id=user.id, kind=DeviceKind.PASSKEY.value, name=name.strip()[:120],
                    credential_id=registered.credential_id, public_key_cose=registered.public_key_cose,
                    sign_count=registered.sign_count, status=DeviceStatus.PENDING.value)
    return _finish(session, enrolment, user, device)


def approve(session: Session, actor: Principal, device_id: str) -> Device:
    """An admin activates a pending device; nobody approves their own."""
    require_roles(actor, APPROVERS, "approving a device")
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("device not found")
    holder = session.get(User, device.user_id)
    assert holder is not None
    require_organisation(session, actor, holder.organisation_id, "device")
    if actor.kind == "user" and actor.id == holder.id:
        raise Forbidden("a device is approved by another admin than its holder")
    if device.status != DeviceStatus.PENDING.value:
        raise Conflict(f"the device is {device.status}, not pending")
    device.status, device.approved_by, device.approved_at = DeviceStatus.ACTIVE.value, actor.ref, datetime.now(UTC)
    audit.record(session, actor=actor.ref, action="device.approve", target=f"device:{device.id}",
                 organisation_id=holder.organisation_id, detail={"user_id": holder.id, "kind": device.kind})
    return device


def register_app_key_for(session: Session, actor: Principal, passwords: Passwords, *, user_id: str, name: str,
                         public_key_der: bytes, pin: str) -> Device:
    """An admin registers a holder's app key directly (CLI set-up, demo data): active at once,
    since the admin is the approver. The holder's own enrolment goes through a link instead."""
    require_roles(actor, APPROVERS, "registering a device")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user not found")
    require_organisation(session, actor, user.organisation_id, "user")
    try:
        key = load_der_public_key(public_key_der)
    except ValueError:
        raise InvalidInput("public key is not a DER SubjectPublicKeyInfo") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidInput("an app key must be ECDSA P-256")
    device = Device(user_id=user.id, kind=DeviceKind.APP_KEY.value, name=name.strip()[:120],
                    public_key_der=public_key_der, status=DeviceStatus.ACTIVE.value,
                    approved_by=actor.ref, approved_at=datetime.now(UTC))
    pins.set_pin(passwords, device, pin)
    session.add(device)
    session.flush()
    audit.record(session, actor=actor.ref, action="device.register", target=f"device:{device.id}",
                 organisation_id=user.organisation_id, detail={"user_id": user.id, "kind": device.kind})
    return device
