"""Worker processes: the hsm worker (resident, non-forking, holds the PIN) and the exchange worker.

rq's default Worker forks per job, and PKCS#11 state does not survive fork(), so both use
SimpleWorker: the job runs in the resident process, where the HSM session stays logged in.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from rq import Queue
from rq.worker import SimpleWorker

import hsm
from signer import heartbeat, jobs
from signer.queues import EXCHANGE, HSM
from signer.services import Services

log = logging.getLogger(__name__)


class _Heartbeat(threading.Thread):
    """Beats every third of the TTL while ``probe`` succeeds; a failing probe stops the beats so
    readiness turns false (e.g. the HSM token went away)."""

    def __init__(self, services: Services, role: str, probe: Any) -> None:
        super().__init__(name=f"{role}-heartbeat", daemon=True)
        self.services, self.role, self.probe = services, role, probe
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = max(1.0, self.services.settings.heartbeat_ttl_s / 3)
        while not self.stopped.is_set():
            try:
                heartbeat.beat(self.services, self.role, self.probe())
            except hsm.HsmError as exc:
                log.error("%s worker: HSM unavailable (%s); not reporting ready", self.role,
                          type(exc).__name__)
            except Exception:
                log.exception("%s worker heartbeat failed", self.role)
            self.stopped.wait(interval)


def _run(services: Services, role: str, queue_name: str, probe: Any, burst: bool,
         with_scheduler: bool = False) -> bool:
    jobs.bind(services)
    previous = _exit_on_sigterm()
    beat = _Heartbeat(services, role, probe)
    beat.start()
    try:
        connection = services.worker_redis()
        worker = SimpleWorker([Queue(services.key(queue_name), connection=connection)], connection=connection)
        return bool(worker.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO"))
    finally:
        beat.stopped.set()
        beat.join(timeout=30)  # a beat in flight must not land after the forget below
        heartbeat.forget(services, role)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm() -> Any:
    """Until rq installs its own handler (warm shutdown), SIGTERM unwinds through ``finally`` so a
    worker stopped right after it started beating still withdraws its heartbeat (otherwise
    /readyz would report a dead worker alive for a heartbeat TTL)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(143)

    return signal.signal(signal.SIGTERM, stop)


def _open_hsm(services: Services, wait_s: float = 30.0) -> hsm.TokenStatus:
    """The token's status, waiting a little for it: SoftHSM2 rewrites its token file when a
    process logs in, and a second hsm worker starting at that instant can find no token at all.
    A token still missing after ``wait_s`` is a real outage: the worker exits and says so."""
    deadline, delay = time.monotonic() + wait_s, 0.2
    while True:
        try:
            return services.hsm().status()
        except hsm.HsmUnavailable as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("hsm worker: token not available yet (%s); retrying in %.1f s", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def _preload_jobs() -> None:
    """Import what the hsm jobs use before serving: a revocation approved right after start must
    reach the CRL and OCSP in well under a second, not after the first job paid the imports."""
    import signer.jobs.lifecycle
    import signer.jobs.pki
    import signer.jobs.signing
    import signer.lifecycle.executor
    import signer.pki.ocsp
    import signer.signing.finish  # noqa: F401


def run_hsm_worker(services: Services, *, burst: bool = False) -> bool:
    """Open the HSM in this process (after any fork) and serve the hsm queue."""
    status = _open_hsm(services)
    log.info("hsm worker on token %r (%d keys)", status.token_label, status.key_count)
    _preload_jobs()

    def probe() -> dict[str, Any]:
        services.hsm().ping()  # cheap: no object enumeration under the process lock
        return {"token": services.settings.hsm_token}

    return _run(services, "hsm", HSM, probe, burst)


def run_exchange_worker(services: Services, *, burst: bool = False) -> bool:
    """Serve the exchange queue (outbox sends, inbox polls); never touches the HSM."""
    # The scheduler moves retried webhook deliveries back onto the queue after their backoff.
    return _run(services, "exchange", EXCHANGE, dict, burst, with_scheduler=True)
