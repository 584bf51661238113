"""App-key PINs: held by the service as Argon2id hashes; five wrong PINs in a row lock the device
until an admin unlocks it. The PIN never reaches a log or the audit detail.

A wrong PIN fails the approval (its transaction rolls back), so the failure is counted in a
transaction of its own (:func:`record_failure`), atomically, so parallel guesses cannot skip it.
"""

from __future__ import annotations

import re

from sqlalchemy import update
from sqlalchemy.orm import Session

from signer import audit
from signer.errors import InvalidInput
from signer.security import Passwords
from signer.signing.models import Device, DeviceStatus

MAX_FAILURES = 5
_PIN = re.compile(r"^\d{6,12}$")


def check_format(pin: str) -> str:
    if not _PIN.match(pin):
        raise InvalidInput("the PIN must be 6 to 12 digits", field="pin")
    return pin


def set_pin(passwords: Passwords, device: Device, pin: str) -> None:
    device.pin_hash = passwords.hash(check_format(pin))
    device.failed_pins = 0


def check(passwords: Passwords, device: Device, pin: str) -> bool:
    """Whether ``pin`` is the device's (a right PIN resets the failure count)."""
    if device.pin_hash is None or not passwords.verify(device.pin_hash, pin):
        return False
    device.failed_pins = 0
    return True


def record_failure(session: Session, device_id: str, *, actor: str, organisation_id: str | None) -> tuple[int, bool]:
    """Count one wrong PIN; returns ``(failures, locked)``. Locks at :data:`MAX_FAILURES`."""
    failures = session.scalar(update(Device).where(Device.id == device_id)
                              .values(failed_pins=Device.failed_pins + 1).returning(Device.failed_pins)) or 0
    locked = failures >= MAX_FAILURES
    if locked:
        session.execute(update(Device).where(Device.id == device_id, Device.status == DeviceStatus.ACTIVE.value)
                        .values(status=DeviceStatus.LOCKED.value))
    audit.record(session, actor=actor, action="device.lock" if locked else "device.wrong_pin",
                 target=f"device:{device_id}", outcome=audit.Outcome.DENIED, organisation_id=organisation_id,
                 detail={"failures": failures})
    return failures, locked
