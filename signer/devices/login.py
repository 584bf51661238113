"""Sign in with a passkey: WebAuthn authentication with a discoverable credential (the phone offers
its passkeys, no username typed), user verification required.

The challenge lives only in Redis (anonymous callers write nothing to the database), expires after
:data:`CHALLENGE_TTL_S` and is taken with GETDEL, so it serves one attempt even under races and
whether that attempt succeeds or not. Every failure is the same 401 to the caller; the reason goes
to the log and the audit trail.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy import select

from signer import audit
from signer.devices import passkeys
from signer.errors import ServiceUnavailable, Unauthenticated
from signer.models import User
from signer.principal import ANONYMOUS
from signer.services import Services
from signer.signing.models import Device, DeviceKind, DeviceStatus

log = logging.getLogger(__name__)
CHALLENGE_TTL_S = 120  # matches the 120 s timeout in the options


class LoginFailed(Exception):
    """Why a passkey sign-in was refused: a fixed ``reason`` code, never secrets."""

    def __init__(self, reason: str, device: Device | None = None) -> None:
        super().__init__(reason)
        self.reason, self.device_id = reason, device.id if device else None


def _rp(svc: Services) -> passkeys.RelyingParty:
    return passkeys.RelyingParty.from_public_url(svc.settings.public_url)


def _key(svc: Services, login_id: str) -> str:
    return svc.key("passkey-login", login_id)


def begin(svc: Services) -> dict[str, Any]:
    """PublicKeyCredentialRequestOptions (no allow list: discoverable credentials) plus the
    ``login_id`` the client sends back with the assertion."""
    login_id, challenge = secrets.token_urlsafe(24), secrets.token_bytes(32)
    try:
        svc.redis.set(_key(svc, login_id), challenge, ex=CHALLENGE_TTL_S)
    except RedisError:
        raise ServiceUnavailable("passkey sign-in is not available; try again later") from None
    options: dict[str, Any] = json.loads(passkeys.authentication_options(_rp(svc), challenge))
    return options | {"login_id": login_id}


def finish(svc: Services, login_id: str, credential: dict[str, Any]) -> User:
    """Check the assertion and return its (active) holder; 401 for anything else."""
    try:
        challenge = svc.redis.getdel(_key(svc, login_id))  # consumed first: one attempt per challenge
    except RedisError:
        raise ServiceUnavailable("passkey sign-in is not available; try again later") from None
    try:
        with svc.db.session() as db:
            if challenge is None:
                raise LoginFailed("unknown-or-expired-login")
            try:
                assertion = passkeys.Assertion.parse(credential)
            except passkeys.PasskeyError:
                raise LoginFailed("malformed-credential") from None
            # Locked so that two concurrent sign-ins cannot both accept the same counter value.
            device = db.scalar(select(Device).where(Device.credential_id == assertion.credential_id)
                               .with_for_update())
            if device is None or device.kind != DeviceKind.PASSKEY.value or device.public_key_cose is None:
                raise LoginFailed("unknown-credential")
            if device.status != DeviceStatus.ACTIVE.value:
                raise LoginFailed(f"device-{device.status}", device)
            user = db.get(User, device.user_id)
            if user is None or not user.active:
                raise LoginFailed("user-inactive", device)
            # A discoverable credential names its account (registered as the user id): it must agree.
            if assertion.user_handle is not None and assertion.user_handle != user.id.encode():
                raise LoginFailed("user-handle-mismatch", device)
            try:
                device.sign_count = passkeys.verify_assertion(
                    _rp(svc), assertion, challenge=bytes(challenge), public_key_cose=device.public_key_cose,
                    sign_count=device.sign_count)
            except passkeys.PasskeyError as exc:
                log.info("passkey sign-in with device %s: %s", device.id, exc)
                raise LoginFailed("assertion-invalid", device) from None
            device.last_used_at = datetime.now(UTC)
            audit.record(db, actor=f"user:{user.id}", action="session.login", target=f"user:{user.id}",
                         organisation_id=user.organisation_id,
                         detail={"method": "passkey", "device_id": device.id})
            return user
    except LoginFailed as failed:
        # Audited after the rollback, in its own transaction (SQLite has one writer at a time).
        log.info("passkey sign-in refused: %s (device %s)", failed.reason, failed.device_id)
        audit.record_now(svc.db, actor=ANONYMOUS.ref, action="session.login", outcome=audit.Outcome.DENIED,
                         target=f"device:{failed.device_id}" if failed.device_id else "",
                         detail={"method": "passkey", "reason": failed.reason})
        raise Unauthenticated("the passkey sign-in did not succeed; try again") from None
