"""The hsm worker (non-forking, holds the PIN), heartbeats, readiness and the scheduler."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

import hsm
from signer import heartbeat
from signer.jobs import hsm as hsm_jobs
from signer.queues import HSM, queue
from signer.scheduler import DEFAULT_TASKS, Scheduler
from signer.services import Services
from signer.settings import Settings
from signer.workers import run_hsm_worker
from tests.support import SoftHsm, in_threads, worker_env


@pytest.mark.one_db  # rq, the token and the heartbeat in Redis
def test_hsm_worker_runs_jobs_in_process(services: Services) -> None:
    job = queue(services, HSM).enqueue(hsm_jobs.token_status)
    run_hsm_worker(services, burst=True)
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value()["token_label"] == "test-main"
    assert heartbeat.alive(services, "hsm") == []  # a stopped worker forgets its beat


@pytest.mark.one_db  # rq and the token
def test_hsm_worker_waits_for_a_token_that_is_briefly_missing(services: Services,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Two hsm workers starting together: SoftHSM2 can show no token to one of them for an instant."""
    real, calls = services.hsm().status, []

    def flaky() -> Any:
        calls.append(1)
        if len(calls) < 3:
            raise hsm.HsmUnavailable("token 'test-main': NoSuchToken")
        return real()

    monkeypatch.setattr(services.hsm(), "status", flaky)
    job = queue(services, HSM).enqueue(hsm_jobs.token_status)
    run_hsm_worker(services, burst=True)
    assert len(calls) == 4  # two misses, the worker opening the token, then the job itself
    job.refresh()
    assert job.get_status() == "finished"


def _worker_env(settings: Settings, softhsm: SoftHsm) -> dict[str, str]:
    return worker_env(settings, softhsm)


def _wait(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.one_db  # the worker's heartbeat in Redis; readyz's database check is a SELECT 1
def test_readyz_follows_the_hsm_worker(client: Any, services: Services, settings: Settings,
                                       softhsm: SoftHsm) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json["checks"]["hsm_worker"]["ok"] is False
    assert resp.json["checks"]["database"]["ok"] and resp.json["checks"]["redis"]["ok"]
    proc = subprocess.Popen([sys.executable, "-m", "signer.cli", "worker", "hsm"],
                            env=_worker_env(settings, softhsm),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert _wait(lambda: client.get("/readyz").status_code == 200), "worker never became ready"
        assert client.get("/readyz").json["checks"]["hsm_worker"]["alive"] == 1
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert client.get("/readyz").status_code == 503


@pytest.mark.one_db  # the PIN check, before any database
def test_worker_with_wrong_pin_refuses_to_start(settings: Settings, softhsm: SoftHsm) -> None:
    env = dict(_worker_env(settings, softhsm), SIGNER_HSM_PIN="0000")
    out = subprocess.run([sys.executable, "-m", "signer.cli", "worker", "hsm"], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert "PinIncorrect" in out.stderr and "0000" not in out.stderr


@pytest.mark.one_db  # Redis down
def test_readyz_without_redis_is_503(client: Any, services: Services,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    monkeypatch.setattr(services, "redis", redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2))
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json["checks"]["redis"] == {"ok": False, "error": "ConnectionError"}


def test_scheduler_runs_due_tasks_once_and_only_as_leader(services: Services, settings: Settings) -> None:
    assert "audit-chain" in [t.name for t in DEFAULT_TASKS]
    tasks = tuple(t for t in DEFAULT_TASKS if t.name == "audit-chain")
    first = Scheduler(services, tasks)
    assert first.tick() == ["audit-chain"]
    assert first.tick() == []  # not due again for ten minutes
    second_services = Services.create(settings)
    try:
        second_services.__dict__["instance"] = "other-host:1"
        second = Scheduler(second_services, tasks)
        assert second.tick() == []  # the first one holds the lease
    finally:
        second_services.close()
    assert b"intact" in (services.redis.get(services.key("audit", "last-verify")) or b"")


class _LeaseExpiresBeforeCommand:
    """Scheduler A's Redis client: right before A's ``n``-th command the lease expires and
    scheduler B takes it over, the worst moment for A."""

    def __init__(self, real: Any, n: int, takeover: Any) -> None:
        self._real, self._n, self._takeover, self.commands = real, n, takeover, 0

    def register_script(self, script: str) -> Any:
        from redis.commands.core import Script

        return Script(self, script)  # its EVALSHA goes through this client too

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name not in {"set", "get", "expire", "eval", "evalsha", "script_load", "delete"}:
            return attr

        def command(*args: Any, **kwargs: Any) -> Any:
            if self.commands == self._n:
                self._takeover()
            self.commands += 1
            return attr(*args, **kwargs)

        return command


@pytest.mark.parametrize("n", range(5))
def test_two_schedulers_racing_for_the_lease_never_both_lead(services: Services, n: int) -> None:
    from types import SimpleNamespace

    real = services.redis
    b = Scheduler(services)
    fake_a = SimpleNamespace(instance="host-a:1", key=services.key)
    key = services.key("scheduler", "leader")

    def takeover() -> None:
        real.delete(key)  # A's lease runs out ...
        assert b._hold_lease()  # ... and B takes it

    fake_a.redis = _LeaseExpiresBeforeCommand(real, n, takeover)
    a = Scheduler(fake_a)  # type: ignore[arg-type]
    real.set(key, b"host-a:1", ex=30)  # A leads and renews
    a_leads = a._hold_lease()
    holder = real.get(key)
    if fake_a.redis.commands > n:  # the takeover happened during A's renewal
        assert holder == services.instance.encode()
        assert not a_leads, "A renewed B's lease and believes it leads: two leaders"
    else:
        assert a_leads and holder == b"host-a:1"
        assert not b._hold_lease()


def test_while_the_leader_renews_the_other_scheduler_never_leads(services: Services,
                                                                 settings: Settings) -> None:
    second_services = Services.create(settings)
    second_services.__dict__["instance"] = "other-host:1"
    schedulers = [Scheduler(services, lease_s=1), Scheduler(second_services, lease_s=1)]
    led = [0, 0]
    try:
        def race(i: int) -> None:
            deadline = time.monotonic() + 2.5  # the lease (1 s) would have expired twice
            while time.monotonic() < deadline:
                led[i] += schedulers[i]._hold_lease()
                time.sleep(0.01)

        in_threads(race, 2)
    finally:
        second_services.close()
    assert sorted(n > 0 for n in led) == [False, True]


@pytest.mark.one_db  # rq's blocking read on Redis
def test_idle_worker_stays_up_and_serves_later_jobs(services: Services, settings: Settings,
                                                   softhsm: SoftHsm) -> None:
    # rq blocks on the queue for minutes; a read timeout on that connection used to kill an idle worker.
    proc = subprocess.Popen([sys.executable, "-m", "signer.cli", "worker", "hsm"],
                            env=worker_env(settings, softhsm), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(7)
        assert proc.poll() is None, "the idle worker exited"
        job = queue(services, HSM).enqueue(hsm_jobs.token_status)
        assert _wait(lambda: job.get_status(refresh=True) == "finished")
    finally:
        proc.terminate()
        proc.wait(30)
