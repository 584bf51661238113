"""The scheduler: one leader (a Redis lease) runs periodic tasks on time.

Tasks that need a key are enqueued for the hsm worker; database-only tasks run inline. Today's
tasks: the audit-chain check, approval expiry, signing recovery, webhook resends, CRL and OCSP
refresh, and the exchange's axis polls, outbox sweep and directory sync.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from signer import audit, heartbeat
from signer.services import Services

log = logging.getLogger(__name__)


@dataclass
class Task:
    name: str
    every_s: float
    run: Callable[[Services], Any]
    next_at: float = field(default=0.0)


def check_audit_chain(services: Services) -> bool:
    """Verify the audit chain and publish the result for dashboards and readiness."""
    with services.db.session() as db:
        report = audit.verify(db)
    services.redis.set(services.key("audit", "last-verify"), report.describe())
    if not report.ok:
        log.error("%s", report.describe())
    return report.ok


def _signing_tasks() -> tuple[Task, ...]:
    from signer.lifecycle import sweeper as lifecycle
    from signer.pki import expiry
    from signer.signing import sweeper

    return (
        Task("certificate-requests", 30.0, lifecycle.sweep),
        # Hourly is enough: signing is refused from a certificate's notAfter whether or not this ran.
        Task("certificate-expiry", 3600.0, expiry.run),
        Task("expire-requests", 5.0, sweeper.expire_requests),
        Task("resume-signing", 30.0, sweeper.resume_signing),
        Task("resend-webhooks", 300.0, sweeper.resend_webhooks),
        Task("refresh-crls", 3600.0, sweeper.refresh_crls),
        Task("refresh-ocsp", 600.0, sweeper.refresh_ocsp),
    )


def _exchange_tasks() -> tuple[Task, ...]:
    from signer.interchange import tasks

    return (
        Task("axis-poll", 2.0, tasks.enqueue_polls),  # each account at most once per axis_poll_interval_s
        Task("exchange-outbox", 15.0, tasks.sweep_outbox),
        Task("axis-directory", 3600.0, tasks.enqueue_directory_sync),
    )


DEFAULT_TASKS = (Task("audit-chain", 600.0, check_audit_chain), *_signing_tasks(), *_exchange_tasks())


# Compare-and-expire / compare-and-delete: one atomic step in Redis, so a lease that ran out and
# was taken by another scheduler between a GET and an EXPIRE is never renewed (or dropped) by
# its former holder, and two schedulers never both lead.
_RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class Scheduler:
    def __init__(self, services: Services, tasks: tuple[Task, ...] = DEFAULT_TASKS,
                 lease_s: int = 30) -> None:
        self.services = services
        self.tasks = [Task(t.name, t.every_s, t.run) for t in tasks]
        self.lease_s = lease_s
        self.stop = threading.Event()
        self._lease_key = services.key("scheduler", "leader")
        self._renew = services.redis.register_script(_RENEW_LEASE)
        self._release = services.redis.register_script(_RELEASE_LEASE)

    def _hold_lease(self) -> bool:
        r, me = self.services.redis, self.services.instance.encode()
        if r.set(self._lease_key, me, nx=True, ex=self.lease_s):
            return True
        return bool(self._renew(keys=[self._lease_key], args=[me, self.lease_s]))

    def tick(self) -> list[str]:
        """Run every due task if this process leads; returns the names run."""
        heartbeat.beat(self.services, "scheduler")
        if not self._hold_lease():
            return []
        ran, now = [], time.time()
        for task in self.tasks:
            if now >= task.next_at:
                task.next_at = now + task.every_s
                try:
                    task.run(self.services)
                    ran.append(task.name)
                except Exception:
                    log.exception("scheduled task %s failed", task.name)
        return ran

    def run_forever(self, interval_s: float = 1.0) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())
        while not self.stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            self.stop.wait(interval_s)
        heartbeat.forget(self.services, "scheduler")
        self._release(keys=[self._lease_key], args=[self.services.instance.encode()])
