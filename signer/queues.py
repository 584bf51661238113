"""rq queues. Names carry the deployment prefix so several deployments can share a Redis."""

from __future__ import annotations

from rq import Queue

from signer.services import Services

HSM = "hsm"
EXCHANGE = "exchange"


def queue(services: Services, name: str) -> Queue:
    return Queue(services.key(name), connection=services.redis)
