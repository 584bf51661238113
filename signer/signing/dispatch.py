"""Hands work to the rq workers after the database commit that made it visible.

If Redis is down at that moment the work is not lost: the scheduler's sweeper re-enqueues
requests left in SIGNING and webhooks left pending.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy.orm import Session

from signer.db import after_commit
from signer.queues import EXCHANGE, HSM, queue

if TYPE_CHECKING:
    from signer.services import Services

log = logging.getLogger(__name__)
WEBHOOK_BACKOFF = [5, 30, 120, 600, 1800, 3600]


class Dispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services

    def finish(self, request_id: str, jobs: int = 1) -> None:
        """Queue ``jobs`` finishing jobs for one request: each claims documents (or chunks of
        hashes) until none is left, so idle hsm workers share a large batch."""
        from signer.jobs.signing import finish_request

        # No fixed job id: a re-enqueue by the sweeper must not collide with the dead worker's
        # abandoned job that rq cleans up; duplicate runs are harmless (documents are leased).
        q = queue(self.services, HSM)
        for _ in range(max(1, jobs)):
            q.enqueue(finish_request, request_id, job_timeout=3600, result_ttl=600,
                      failure_ttl=86400, description=f"finish sign request {request_id}")

    def finishing_jobs(self, files: int, hashes: int) -> int:
        """How many hsm workers should share a request: one per unit of work (a file, a chunk of
        hashes), at most the number of live hsm workers."""
        from signer import heartbeat
        from signer.signing.hashes import CHUNK

        units = files + -(-hashes // CHUNK)
        if units <= 1:
            return 1
        try:
            alive = len(heartbeat.alive(self.services, "hsm"))
        except RedisError:
            return 1  # enqueueing will fail too; the sweeper re-enqueues later
        return max(1, min(units, alive))

    def announce(self, request_id: str, state: str) -> None:
        """Wake the long polls waiting on ``request_id`` (best effort: they also re-check the
        database every second, so a lost message costs latency, never a missed state), and tell
        its holders' phones."""
        self.services.redis.publish(state_channel(self.services, request_id), state)
        self.notify(request_id)

    def notify(self, request_id: str) -> None:
        """Queue the holders' notifications (live channel, gateway) for the request's state."""
        from signer.jobs.notify import notify_request

        queue(self.services, EXCHANGE).enqueue(notify_request, request_id, result_ttl=60, failure_ttl=3600,
                                               description=f"notify holders of {request_id}")

    def webhook(self, delivery_id: str) -> None:
        from signer.jobs.signing import deliver_webhook

        queue(self.services, EXCHANGE).enqueue(
            deliver_webhook, delivery_id, job_id=f"webhook-{delivery_id}",
            retry=Retry(max=len(WEBHOOK_BACKOFF), interval=WEBHOOK_BACKOFF), result_ttl=600)


def _dispatcher(session: Session) -> Dispatcher | None:
    found = session.info.get("dispatcher")
    return found if isinstance(found, Dispatcher) else None


def state_channel(services: Services, request_id: str) -> str:
    """The Redis pub/sub channel announcing state changes of one sign request."""
    return services.key("sign-request", request_id)


def announce_after_commit(session: Session, request_id: str, state: str) -> None:
    """Announce a sign request's new state once it is committed."""
    dispatcher = _dispatcher(session)
    if dispatcher is not None:
        after_commit(session, lambda: dispatcher.announce(request_id, state))


def notify_after_commit(session: Session, request_id: str) -> None:
    """Queue the holders' notifications once the new request is committed."""
    dispatcher = _dispatcher(session)
    if dispatcher is not None:
        after_commit(session, lambda: dispatcher.notify(request_id))


def finish_after_commit(session: Session, request_id: str, *, files: int = 1, hashes: int = 0) -> None:
    """Queue the hsm workers' finishing jobs once the approval is committed."""
    dispatcher = _dispatcher(session)
    if dispatcher is not None:
        after_commit(session, lambda: dispatcher.finish(request_id, dispatcher.finishing_jobs(files, hashes)))


def webhook_after_commit(session: Session, delivery_id: str) -> None:
    dispatcher = _dispatcher(session)
    if dispatcher is not None:
        after_commit(session, lambda: dispatcher.webhook(delivery_id))
