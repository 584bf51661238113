"""Scheduler tasks of the exchange: they only enqueue work for the exchange worker.

Polls are gated per organisation by a Redis key that lives for the poll interval, so however
often the scheduler ticks, each account is polled at most once per interval and never by two
jobs piling up behind a slow axis.
"""

from __future__ import annotations

from signer.interchange import delivery
from signer.interchange.accounts import accounts
from signer.queues import EXCHANGE, queue
from signer.services import Services


def enqueue_polls(services: Services) -> int:
    """Queue a poll job for every account whose interval has passed; returns how many."""
    from signer.jobs.exchange import poll_organisation

    interval = max(1, round(services.settings.axis_poll_interval_s))
    with services.db.session(readonly=True) as db:
        ids = [a.organisation_id for a in accounts(db)]
    queued = 0
    for organisation_id in ids:
        if services.redis.set(services.key("axis-poll", organisation_id), "1", nx=True, ex=interval):
            queue(services, EXCHANGE).enqueue(poll_organisation, organisation_id, result_ttl=60, failure_ttl=3600,
                                              job_timeout=600, description=f"poll the axis for {organisation_id}")
            queued += 1
    return queued


def enqueue_directory_sync(services: Services) -> None:
    from signer.jobs.exchange import sync_directory

    with services.db.session(readonly=True) as db:
        if not accounts(db):
            return
    queue(services, EXCHANGE).enqueue(sync_directory, result_ttl=60, failure_ttl=3600,
                                      description="synchronise the axis directory")


def sweep_outbox(services: Services) -> int:
    return delivery.sweep(services)
