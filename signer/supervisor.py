"""``signer run``: start every process of the service in the foreground; Ctrl-C stops them all.

Each child runs in its own session (process group), so the supervisor decides the stop order and
can kill a child's own children (gunicorn workers) with the group. Each child gets its own
environment: only the hsm worker receives the HSM PIN (DESIGN: the web tier cannot sign).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

log = logging.getLogger(__name__)


# The token PINs. Only the hsm worker gets the user PIN; the SO PIN is for set-up
# (softhsm/init-token.sh), so no service process gets it.
USER_PIN_VARS = frozenset({"SIGNER_HSM_PIN", "SIGNER_HSM_PIN_FILE"})
SO_PIN_VARS = frozenset({"SIGNER_HSM_SO_PIN", "SIGNER_HSM_SO_PIN_FILE"})
PIN_VARS = USER_PIN_VARS | SO_PIN_VARS


HSM_WORKER_STAGGER_S = 0.5


def child_env(base: Mapping[str, str], *, holds_pin: bool = False) -> dict[str, str]:
    """``base`` without the PIN variables a child must not see (all of them unless ``holds_pin``)."""
    drop = SO_PIN_VARS if holds_pin else PIN_VARS
    return {k: v for k, v in base.items() if k not in drop}


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)  # the child's whole environment
    proc: subprocess.Popen[bytes] | None = None


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def private_redis(state_dir: Path, port: int, env: Mapping[str, str]) -> Child:
    folder = state_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    return Child("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                           "--appendonly", "no", "--dir", str(folder), "--protected-mode", "yes"],
                 child_env(env))


def service_children(bind: str, web_workers: int, env: Mapping[str, str], hsm_workers: int = 1,
                     local_axis: bool = False) -> list[Child]:
    """The service processes, each with its own environment: only the hsm workers hold the PIN.
    With ``local_axis`` (no SIGNER_AXIS_URL), the local axis runs beside them.

    Several hsm workers sign in parallel (one PKCS#11 lock per process, DESIGN.md section 3);
    they share large batches (see :meth:`signer.signing.dispatch.Dispatcher.finishing_jobs`).
    """
    signer = _bin("signer")
    hsm = [Child(f"hsm-worker-{n}", [signer, "worker", "hsm"], child_env(env, holds_pin=True))
           for n in range(1, hsm_workers + 1)]
    axis = [Child("local-axis", [signer, "axis", "serve"], child_env(env))] if local_axis else []
    return [
        *axis,
        *hsm,
        Child("exchange-worker", [signer, "worker", "exchange"], child_env(env)),
        Child("scheduler", [signer, "scheduler"], child_env(env)),
        Child("web", [_bin("gunicorn"), "--bind", bind, "--workers", str(web_workers),
                      # Threads, not plain sync workers: a long poll (?wait=60) must not hold a
                      # whole process. The web tier never touches PKCS#11, so threads are safe.
                      "--worker-class", "gthread", "--threads", "8",
                      "--access-logfile", "-", "--graceful-timeout", "10",
                      "--no-control-socket",
                      "signer.app:create_app()"], child_env(env)),
    ]


def wait_for_redis(url: str, timeout_s: float = 10.0) -> None:
    """Block until the Redis at ``url`` answers PING (a freshly started server)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            client.close()


class Supervisor:
    def __init__(self, state_dir: Path, children: list[Child], redis_child: Child | None,
                 redis_url: str) -> None:
        self.state_dir = state_dir
        self.children = children
        self.redis_child = redis_child
        self.redis_url = redis_url
        self.stopping = False

    def _start(self, child: Child) -> None:
        child.proc = subprocess.Popen(child.argv, env=child.env, start_new_session=True)
        log.info("started %s (pid %d)", child.name, child.proc.pid)

    def _all(self) -> list[Child]:
        return ([self.redis_child] if self.redis_child else []) + self.children

    def _write_pids(self) -> None:
        run_dir = self.state_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        pids = {c.name: c.proc.pid for c in self._all() if c.proc}
        (run_dir / "pids.json").write_text(json.dumps({"supervisor": os.getpid(), **pids}))

    def stop(self, grace_s: float = 15.0) -> None:
        """Stop the service processes first, Redis last; kill whatever outlives the grace period."""
        self.stopping = True
        for group in (self.children, [self.redis_child] if self.redis_child else []):
            for child in group:
                if child.proc and child.proc.poll() is None:
                    _signal_group(child.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for child in group:
                if child.proc is None:
                    continue
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.warning("%s did not stop in time; killing it", child.name)
                    _signal_group(child.proc.pid, signal.SIGKILL)
                    child.proc.wait()
                # Reap anything the child left in its group (gunicorn workers, rq horses).
                _signal_group(child.proc.pid, signal.SIGKILL)
        (self.state_dir / "run" / "pids.json").unlink(missing_ok=True)

    def run(self) -> int:
        def on_signal(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt

        # Set both explicitly: a shell starting us in the background leaves SIGINT ignored.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            if self.redis_child:
                self._start(self.redis_child)
                wait_for_redis(self.redis_url)
            for child in self.children:
                self._start(child)
                if child.name.startswith("hsm-worker"):
                    # Logging in rewrites SoftHSM2's token file; a second process opening the token
                    # at that instant can find none. A short stagger avoids the race (the workers
                    # also wait for a briefly missing token).
                    time.sleep(HSM_WORKER_STAGGER_S)
            self._write_pids()
            while True:
                for child in self._all():
                    assert child.proc is not None
                    code = child.proc.poll()
                    if code is not None:
                        log.error("%s exited with status %s; stopping everything", child.name, code)
                        return 1
                time.sleep(0.2)
        except KeyboardInterrupt:
            log.info("stopping")
            return 0
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.stop()


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
