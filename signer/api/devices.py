"""Approval devices: enrolment links, passkey and app-key registration, approval and management."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import timedelta
from typing import Any, Literal

import segno
from flask import Blueprint, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from signer.api.views import iso
from signer.devices import enrolment, manage, passkeys
from signer.errors import InvalidInput
from signer.http.auth import current_principal, services
from signer.http.bodies import parse_json
from signer.signing.models import Device, DeviceKind, DeviceStatus

bp = Blueprint("devices", __name__)


class EnrolmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str = Field(min_length=1, max_length=36)
    kind: Literal["webauthn", "app_key"] | None = Field(default=None, description="null: either kind")
    expires_in: int = Field(default=86400, ge=300, le=7 * 86400, description="seconds the link stays valid")


class AppKeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120)
    public_key: str = Field(min_length=16, max_length=1024, description="ECDSA P-256 SubjectPublicKeyInfo, "
                                                                        "DER, base64")
    pin: str = Field(pattern=r"^\d{6,12}$", description="6 to 12 digits, checked by the service")


class PasskeyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120)
    credential: dict[str, Any] = Field(description="the PublicKeyCredential from navigator.credentials.create, "
                                                   "binary fields base64url (as toJSON() gives)")


class RenameBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=120)


def device_view(d: Device) -> dict[str, Any]:
    return {"id": d.id, "user_id": d.user_id, "kind": d.kind, "name": d.name, "status": d.status,
            "sign_count": d.sign_count, "failed_pins": d.failed_pins, "approved_by": d.approved_by,
            "approved_at": iso(d.approved_at) if d.approved_at else None,
            "last_used_at": iso(d.last_used_at) if d.last_used_at else None, "created_at": iso(d.created_at)}


def _rp() -> passkeys.RelyingParty:
    return passkeys.RelyingParty.from_public_url(services().settings.public_url)


@bp.post("/v1/admin/enrolments")
def create_enrolment() -> ResponseReturnValue:
    """Create a one-time enrolment link for a leader or clerk (admins, RA officers)"""
    principal = current_principal()
    body = parse_json(EnrolmentBody)
    with services().db.session() as db:
        link = enrolment.create_link(db, principal, user_id=body.user_id,
                                     kind=DeviceKind(body.kind) if body.kind else None,
                                     ttl=timedelta(seconds=body.expires_in))
        e = link.enrolment
        url = _rp().origin + url_for("phone.enrol", token=link.token)
        # The QR code is made now: only the token's hash is kept, so it cannot be drawn later.
        qr = segno.make(url, error="m").svg_inline(scale=4, dark="#000", light="#fff")
        return jsonify(id=e.id, user_id=e.user_id, kind=e.kind, expires_at=iso(e.expires_at), token=link.token,
                       url=url, qr_svg=qr), 201


@bp.get("/v1/enrolments/<token>")
def enrolment_info(token: str) -> ResponseReturnValue:
    """What an enrolment link is for (the token is the credential)"""
    with services().db.session(readonly=True) as db:
        e, user = enrolment.open_link(db, token)
        return jsonify(user=user.full_name, username=user.username, kind=e.kind, expires_at=iso(e.expires_at))


@bp.post("/v1/enrolments/<token>/app-key")
def register_app_key(token: str) -> ResponseReturnValue:
    """Register an app key and its PIN with an enrolment link; an admin approves it next"""
    body = parse_json(AppKeyBody)
    try:
        der = base64.b64decode(body.public_key, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("public_key is not base64", field="public_key") from None
    svc = services()
    with svc.db.session() as db:
        device = enrolment.register_app_key(db, svc.pin_hasher, token, name=body.name, public_key_der=der,
                                            pin=body.pin)
        return jsonify(device_view(device)), 201


@bp.post("/v1/enrolments/<token>/passkey/options")
def passkey_options(token: str) -> ResponseReturnValue:
    """WebAuthn registration options for navigator.credentials.create"""
    with services().db.session() as db:
        return jsonify(json.loads(enrolment.passkey_options(db, token, _rp())))


@bp.post("/v1/enrolments/<token>/passkey")
def register_passkey(token: str) -> ResponseReturnValue:
    """Register a passkey with an enrolment link; an admin approves it next"""
    body = parse_json(PasskeyBody)
    with services().db.session() as db:
        device = enrolment.register_passkey(db, token, _rp(), name=body.name, credential=body.credential)
        return jsonify(device_view(device)), 201


@bp.get("/v1/devices")
def list_devices() -> ResponseReturnValue:
    """Devices: your own, or those of your organisations (admins, RA officers, auditors)"""
    principal = current_principal()
    status = request.args.get("status")
    if status is not None and status not in {s.value for s in DeviceStatus}:
        raise InvalidInput("unknown status", field="status")
    with services().db.session(readonly=True) as db:
        items = manage.list_devices(db, principal, user_id=request.args.get("user_id"), status=status)
        return jsonify(items=[device_view(d) for d in items])


@bp.post("/v1/devices/<device_id>/approve")
def approve_device(device_id: str) -> ResponseReturnValue:
    """Activate a pending device (an admin other than its holder)"""
    with services().db.session() as db:
        return jsonify(device_view(enrolment.approve(db, current_principal(), device_id)))


@bp.patch("/v1/devices/<device_id>")
def rename_device(device_id: str) -> ResponseReturnValue:
    """Rename a device"""
    body = parse_json(RenameBody)
    with services().db.session() as db:
        return jsonify(device_view(manage.rename(db, current_principal(), device_id, body.name)))


@bp.post("/v1/devices/<device_id>/disable")
def disable_device(device_id: str) -> ResponseReturnValue:
    """Disable a device (its holder or an admin); it approves nothing until re-enabled"""
    with services().db.session() as db:
        return jsonify(device_view(manage.disable(db, current_principal(), device_id)))


@bp.post("/v1/devices/<device_id>/enable")
def enable_device(device_id: str) -> ResponseReturnValue:
    """Re-enable a disabled device or unlock one locked by wrong PINs (admins)"""
    with services().db.session() as db:
        return jsonify(device_view(manage.enable(db, current_principal(), device_id)))


@bp.delete("/v1/devices/<device_id>")
def remove_device(device_id: str) -> ResponseReturnValue:
    """Remove a device (kept disabled if it has approved anything)"""
    with services().db.session() as db:
        manage.remove(db, current_principal(), device_id)
    return "", 204
