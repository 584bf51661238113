"""Signed webhooks to the document system on every final state of a sign request.

Body: JSON with the request's outcome. Headers: ``X-Signer-Timestamp`` (Unix seconds) and
``X-Signer-Signature: v1=<hex>``, HMAC-SHA256 with the API client's webhook secret over
``"<timestamp>.<body>"``; receivers should reject timestamps older than a few minutes.
Delivery runs on the exchange worker with rq retries and backoff: it never blocks signing. URLs
resolving to private or reserved addresses are refused (see :mod:`signer.outbound`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from signer import outbound
from signer.models import ApiClient
from signer.secretbox import SecretBox
from signer.signing.dispatch import webhook_after_commit
from signer.signing.models import SignRequest, WebhookDelivery


class DeliveryFailed(Exception):
    """The receiver did not answer 2xx; rq retries the job with backoff."""


def schedule(session: Session, request: SignRequest) -> WebhookDelivery | None:
    """Record a delivery for the request's final state and queue it after commit."""
    if not request.callback_url:
        return None
    delivery = WebhookDelivery(request_id=request.id, event=f"sign_request.{request.state.lower()}",
                               url=request.callback_url)
    session.add(delivery)
    session.flush()
    webhook_after_commit(session, delivery.id)
    return delivery


def payload(request: SignRequest) -> dict[str, Any]:
    return {
        "type": f"sign_request.{request.state.lower()}", "id": request.id, "state": request.state,
        "result": request.result, "reason": request.reason,
        "completed_at": request.completed_at.isoformat() if request.completed_at else None,
        "documents": [{"id": d.id, "name": d.name, "state": d.state, "reason": d.reason}
                      for d in request.documents],
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, signature_header: str, body: bytes, *,
           tolerance_s: int = 300, now: float | None = None) -> bool:
    """What a receiver does (also used by our tests): check freshness and the HMAC."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > tolerance_s:
        return False
    expected = "v1=" + sign(secret, int(timestamp), body)
    return hmac.compare_digest(expected, signature_header)


def deliver(session: Session, box: SecretBox, delivery_id: str, timeout_s: float, *,
            allow_private: bool = False) -> str:
    """POST one delivery; raise :class:`DeliveryFailed` for rq to retry (not for a refused URL)."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.status in ("delivered", "refused"):
        return "nothing to do"
    request = session.get(SignRequest, delivery.request_id)
    assert request is not None
    client = session.get(ApiClient, request.api_client_id)
    body = json.dumps(payload(request), ensure_ascii=False, sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "vn-remote-signer/1",
               "X-Signer-Timestamp": str(timestamp), "X-Signer-Event": delivery.event}
    if client is not None and client.webhook_secret:
        headers["X-Signer-Signature"] = "v1=" + sign(box.open(client.webhook_secret), timestamp, body)
    delivery.attempts += 1
    try:
        status = outbound.post(delivery.url, body, headers, timeout_s=timeout_s, allow_private=allow_private)
    except outbound.TargetRefused as exc:
        # Never retried: the URL itself is not allowed (e.g. it resolves to a private address).
        delivery.status, delivery.last_error = "refused", str(exc)[:255]
        return "refused"
    except outbound.TargetUnreachable as exc:
        delivery.last_error = str(exc)[:255]
        raise DeliveryFailed(delivery.last_error) from None
    if not 200 <= status < 300:
        delivery.last_error = f"HTTP {status}"
        raise DeliveryFailed(delivery.last_error)
    delivery.status, delivery.delivered_at, delivery.last_error = "delivered", datetime.now(UTC), None
    return "delivered"
