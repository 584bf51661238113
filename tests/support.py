"""Test helpers shared by the fixtures: throw-away SoftHSM2 tokens, a private Redis, databases."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from asn1crypto import core

from signer.settings import Settings
from signer.supervisor import wait_for_redis

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
INIT_TOKEN = REPO / "softhsm" / "init-token.sh"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass
class SoftHsm:
    """A private SoftHSM2 configuration in a temporary folder; tokens made with our own script."""

    conf: Path
    pin: str
    so_pin: str
    module: str = SOFTHSM_MODULE

    def env(self, label: str) -> dict[str, str]:
        return dict(os.environ, SOFTHSM2_CONF=str(self.conf), SIGNER_HSM_TOKEN=label,
                    SIGNER_HSM_PIN=self.pin, SIGNER_HSM_SO_PIN=self.so_pin)

    def create_token(self, label: str) -> None:
        subprocess.run([str(INIT_TOKEN)], env=self.env(label), check=True, capture_output=True)

    def delete_token(self, label: str) -> None:
        subprocess.run(["softhsm2-util", "--delete-token", "--token", label],
                       env=self.env(label), check=True, capture_output=True)


def make_softhsm(folder: Path) -> SoftHsm:
    folder.mkdir(parents=True, exist_ok=True)
    return SoftHsm(conf=folder / "softhsm2.conf", pin=secrets.token_hex(8), so_pin=secrets.token_hex(8))


def in_threads(work: Callable[[int], T], count: int) -> list[T]:
    """Run ``work(n)`` in ``count`` threads at once; re-raise the first error in the caller."""
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            results[n] = work(n)
        except BaseException as exc:  # collected and re-raised in the calling thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [results[n] for n in range(count)]


def worker_env(settings: Settings, softhsm: SoftHsm, **extra: str) -> dict[str, str]:
    """The environment of a worker subprocess serving this test's settings.

    Inherited deployment variables (the developer's state/, PIN files, blob folder, database) are
    dropped first: a worker must never mix this test's database with another store.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SIGNER_") and k not in {"DATABASE_URL", "REDIS_URL", "SOFTHSM2_CONF"}}
    env.update(DATABASE_URL=settings.database_url, REDIS_URL=settings.redis_url,
               SIGNER_HSM_MODULE=softhsm.module, SIGNER_HSM_TOKEN=settings.hsm_token, SIGNER_HSM_PIN=softhsm.pin,
               SOFTHSM2_CONF=str(softhsm.conf), SIGNER_QUEUE_PREFIX=settings.queue_prefix,
               SIGNER_STATE_DIR=str(settings.state_dir), SIGNER_SIGNING_LEASE_S=str(settings.signing_lease_s),
               SIGNER_DOCUMENT_TIME_LIMIT_S=str(settings.document_time_limit_s),
               SIGNER_WEBHOOK_ALLOW_PRIVATE="1" if settings.webhook_allow_private else "0")
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server on a free loopback port, nothing on disk."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        wait_for_redis(self.url)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def copy_file(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)


_SET_CONTENTS = "_set_contents"


@contextmanager
def forced_reencodes() -> Iterator[list[str]]:
    """Names of the asn1crypto classes re-encoded with ``force=True`` inside the block.

    Our own DER never needs it; asn1crypto forcing it on DER input is the bug fixed in
    signer/asn1compat.py (a deep re-encode that made some B-T signatures take seconds to minutes).
    """
    calls: list[str] = []
    originals = {cls: vars(cls)[_SET_CONTENTS] for cls in (core.Sequence, core.SequenceOf)}

    def spy(original: Any) -> Any:
        def _set_contents(self: Any, force: bool = False) -> None:
            if force:
                calls.append(type(self).__name__)
            original(self, force)
        return _set_contents

    for cls, original in originals.items():
        setattr(cls, _SET_CONTENTS, spy(original))
    try:
        yield calls
    finally:
        for cls, original in originals.items():
            setattr(cls, _SET_CONTENTS, original)


@contextmanager
def hsm_worker_processes(services: Any, softhsm: SoftHsm, count: int) -> Iterator[None]:
    """``count`` real hsm worker processes for this test's settings, alive (heartbeating) on entry,
    stopped on exit."""
    import sys
    import time

    from signer import heartbeat

    workers = [subprocess.Popen([sys.executable, "-m", "signer.cli", "worker", "hsm"],
                                env=worker_env(services.settings, softhsm), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(count)]
    try:
        deadline = time.monotonic() + 60
        while len(heartbeat.alive(services, "hsm")) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(heartbeat.alive(services, "hsm")) == count
        yield
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(30)
