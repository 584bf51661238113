"""Listing and managing devices. Holders rename, disable and remove their own; admins also
re-enable, unlock (after five wrong PINs) and manage anyone's in their organisations."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from signer import audit
from signer.authz import MANAGERS, READERS, require_organisation, require_roles, visible_organisations
from signer.errors import Conflict, Forbidden, NotFound
from signer.models import User
from signer.principal import Principal
from signer.signing.models import Approval, Device, DeviceStatus


def _load(session: Session, actor: Principal, device_id: str) -> tuple[Device, User]:
    device = session.get(Device, device_id)
    if device is None:
        raise NotFound("device not found")
    holder = session.get(User, device.user_id)
    assert holder is not None
    if actor.kind == "user" and actor.id == holder.id:
        return device, holder
    require_organisation(session, actor, holder.organisation_id, "device")
    return device, holder


def _require_manager(actor: Principal, holder: User, action: str) -> None:
    if actor.kind == "user" and actor.id == holder.id:
        return
    require_roles(actor, MANAGERS, action)


def list_devices(session: Session, actor: Principal, *, user_id: str | None = None,
                 status: str | None = None) -> list[Device]:
    """The caller's own devices, or (admins, RA officers, auditors) those of their organisations."""
    query = select(Device).join(User, User.id == Device.user_id).order_by(Device.created_at)
    if user_id is None and not (actor.kind == "user" and actor.has_any_role(READERS)):
        query = query.where(Device.user_id == actor.id)
    else:
        if user_id is not None and not (actor.kind == "user" and actor.id == user_id):
            require_roles(actor, READERS, "listing other people's devices")
            query = query.where(Device.user_id == user_id)
        elif user_id is not None:
            query = query.where(Device.user_id == user_id)
        visible = visible_organisations(session, actor)
        if visible is not None:
            query = query.where(User.organisation_id.in_(visible))
    if status is not None:
        query = query.where(Device.status == status)
    return list(session.scalars(query))


def _record(session: Session, actor: Principal, action: str, device: Device, holder: User, **detail: str) -> None:
    audit.record(session, actor=actor.ref, action=action, target=f"device:{device.id}",
                 organisation_id=holder.organisation_id, detail={"user_id": holder.id, **detail})


def rename(session: Session, actor: Principal, device_id: str, name: str) -> Device:
    device, holder = _load(session, actor, device_id)
    _require_manager(actor, holder, "renaming a device")
    old, device.name = device.name, name.strip()[:120]
    _record(session, actor, "device.rename", device, holder, old=old, new=device.name)
    return device


def disable(session: Session, actor: Principal, device_id: str) -> Device:
    """Anyone may switch off their own device (a lost phone); it then approves nothing."""
    device, holder = _load(session, actor, device_id)
    _require_manager(actor, holder, "disabling a device")
    if device.status == DeviceStatus.DISABLED.value:
        return device
    previous, device.status = device.status, DeviceStatus.DISABLED.value
    _record(session, actor, "device.disable", device, holder, previous=previous)
    return device


def enable(session: Session, actor: Principal, device_id: str) -> Device:
    """Back to active after disable or a PIN lock: an admin's decision, never the holder's own."""
    device, holder = _load(session, actor, device_id)
    require_roles(actor, MANAGERS, "re-enabling a device")
    if actor.kind == "user" and actor.id == holder.id:
        raise Forbidden("another admin re-enables your device")
    if device.status not in (DeviceStatus.DISABLED.value, DeviceStatus.LOCKED.value):
        raise Conflict(f"the device is {device.status}")
    previous = device.status
    device.status, device.failed_pins = DeviceStatus.ACTIVE.value, 0
    _record(session, actor, "device.unlock" if previous == DeviceStatus.LOCKED.value else "device.enable",
            device, holder, previous=previous)
    return device


def remove(session: Session, actor: Principal, device_id: str) -> None:
    """Delete a device; one that has approved something is kept (for the audit trail) as disabled."""
    device, holder = _load(session, actor, device_id)
    _require_manager(actor, holder, "removing a device")
    used = session.scalar(select(Approval.id).where(Approval.device_id == device.id).limit(1)) is not None
    if used:  # its keys stay, so past approvals remain checkable
        device.status = DeviceStatus.DISABLED.value
    else:
        session.delete(device)
    _record(session, actor, "device.remove", device, holder, kept_disabled=str(used).lower())
