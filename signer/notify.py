"""Telling key holders that a request waits for them (DESIGN.md section 5, issue 4).

Notifiers are pluggable (:class:`Notifier`): the live channel (Redis pub/sub per holder, what the
phone page listens to) always; a webhook to an SMS/OTT gateway when ``SIGNER_NOTIFY_WEBHOOK_URL``
is set. Notifications run on the exchange worker after the request is committed: a gateway that
is down or refuses never blocks, fails or delays the sign request itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from signer import outbound
from signer.models import CredentialKind, Role, User
from signer.services import Services
from signer.signing.models import SignRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notification:
    """What a holder is told: no document contents, no codes (the phone shows those after login)."""

    event: str  # "sign_request.pending" or "sign_request.<final state>"
    request_id: str
    user_id: str
    username: str
    documents: int
    expires_at: str
    state: str


class Notifier(Protocol):
    def notify(self, notification: Notification) -> None: ...


class LiveChannel:
    """Publishes on the holder's Redis channel (``holder:<user id>``); the phone page relays it."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def notify(self, notification: Notification) -> None:
        channel = holder_channel(self.services, notification.user_id)
        self.services.redis.publish(channel, json.dumps(asdict(notification)))


class WebhookNotifier:
    """POSTs the notification to a gateway (SMS, Zalo OA, ...), signed like our other webhooks."""

    def __init__(self, url: str, secret: str | None, timeout_s: float) -> None:
        self.url, self.secret, self.timeout_s = url, secret, timeout_s

    def notify(self, notification: Notification) -> None:
        body = json.dumps(asdict(notification), ensure_ascii=False, sort_keys=True).encode()
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "X-Signer-Timestamp": str(timestamp),
                   "X-Signer-Event": notification.event}
        if self.secret:
            mac = hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
            headers["X-Signer-Signature"] = f"v1={mac}"
        # The operator configures this URL (not an API client): private addresses are allowed.
        status = outbound.post(self.url, body, headers, timeout_s=self.timeout_s, allow_private=True)
        if not 200 <= status < 300:
            raise outbound.TargetUnreachable(f"the notification gateway answered HTTP {status}")


def holder_channel(services: Services, user_id: str) -> str:
    return services.key("holder", user_id)


def notifiers(services: Services) -> list[Notifier]:
    """The configured notifiers, live channel first."""
    found: list[Notifier] = [LiveChannel(services)]
    if services.settings.notify_webhook_url:
        secret = services.settings.notify_webhook_secret
        found.append(WebhookNotifier(services.settings.notify_webhook_url,
                                     secret.get_secret_value() if secret else None,
                                     services.settings.webhook_timeout_s))
    return found


def holders(session: Session, request: SignRequest) -> list[User]:
    """Who may decide on ``request``: the personal key's owner, or the organisation's clerks."""
    credential = request.credential
    if credential.kind == CredentialKind.PERSONAL.value:
        owner = session.get(User, credential.owner_user_id) if credential.owner_user_id else None
        return [owner] if owner is not None and owner.active else []
    clerks = session.scalars(select(User).where(User.organisation_id == credential.organisation_id,
                                                User.active.is_(True)))
    return [u for u in clerks if Role.CLERK in u.roles]


def notify_request(services: Services, request_id: str) -> int:
    """Tell every holder about the request's current state; returns how many deliveries failed.

    Each notifier is tried for each holder; a failure is logged and counted, never raised, so
    one broken gateway does not stop the live channel or the other holders.
    """
    with services.db.session(readonly=True) as s:
        request = s.get(SignRequest, request_id)
        if request is None:
            return 0
        event = ("sign_request.pending" if request.state == "AWAITING_APPROVAL"
                 else f"sign_request.{request.state.lower()}")
        items = [Notification(event, request.id, u.id, u.username, len(request.documents),
                              request.expires_at.isoformat(), request.state) for u in holders(s, request)]
    return deliver(services, items)


def deliver(services: Services, items: list[Notification]) -> int:
    """Send ``items`` through every configured notifier; returns how many deliveries failed
    (logged and counted, never raised: one broken gateway does not stop the others)."""
    failed = 0
    for notifier in notifiers(services):
        for item in items:
            try:
                notifier.notify(item)
            except Exception as exc:  # a notification never fails the request or the job
                failed += 1
                log.warning("notifier %s could not reach %s: %s", type(notifier).__name__, item.username,
                            type(exc).__name__)
    return failed
