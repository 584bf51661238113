"""Scheduled upkeep of lifecycle requests: expire the ones nobody decided in time, and hand the
hsm worker approved requests whose job was lost (Redis down at approval time)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from signer.lifecycle import executor
from signer.lifecycle import requests as lifecycle

if TYPE_CHECKING:
    from signer.services import Services

# An approved request normally starts within milliseconds; one still waiting after this long lost its job.
REQUEUE_AFTER = dt.timedelta(seconds=60)


def sweep(services: Services, now: dt.datetime | None = None) -> dict[str, int]:
    """Expire overdue pending requests; re-queue approved ones no worker picked up."""
    with services.db.session() as s:
        expired = lifecycle.expire_due(s, now)
    with services.db.session(readonly=True) as s:
        stale = executor.stale_approved(s, REQUEUE_AFTER, now)
    for request_id in stale:  # a duplicate run is harmless: execution claims the request once
        lifecycle.enqueue_execution(services, request_id)
    return {"expired": expired, "requeued": len(stale)}
