"""Signing jobs: finishing a request (hsm queue) and delivering its webhook (exchange queue)."""

from __future__ import annotations

from signer.jobs import services
from signer.secretbox import SecretBox
from signer.signing import finish, webhooks


def finish_request(request_id: str) -> str:
    """Verify the approval and sign every document of ``request_id`` (hsm worker only)."""
    return finish.finish_request(services(), request_id)


def deliver_webhook(delivery_id: str) -> str:
    """POST one webhook delivery; raising makes rq retry it with backoff."""
    svc = services()
    box = SecretBox(svc.settings.require_secret_key(), "webhook")
    failure: webhooks.DeliveryFailed | None = None
    with svc.db.session() as s:
        try:
            outcome = webhooks.deliver(s, box, delivery_id, svc.settings.webhook_timeout_s,
                                       allow_private=svc.settings.webhook_allow_private)
        except webhooks.DeliveryFailed as exc:
            failure, outcome = exc, "failed"  # attempts and last error still commit
    if failure is not None:
        raise failure
    return outcome
