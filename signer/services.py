"""The long-lived parts a process needs, built from :class:`~signer.settings.Settings`.

Built by ``create_app`` for the web tier, and by the CLI and the workers for theirs. Creating a
Redis client or an engine does not connect, so this is safe before gunicorn or rq forks.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from functools import cached_property

import redis
from redis import Redis

import hsm
from signer.blobs import FilesystemBlobStore
from signer.db import Database
from signer.security import Passwords
from signer.settings import Settings


@dataclass
class Services:
    settings: Settings
    db: Database
    redis: redis.Redis  # type: ignore[type-arg]
    passwords: Passwords
    _hsm: hsm.Hsm | None = field(default=None, repr=False)

    @classmethod
    def create(cls, settings: Settings) -> Services:
        info: dict[str, object] = {}
        services = cls(
            settings=settings,
            db=Database(settings.effective_database_url, session_info=info),
            redis=redis.Redis.from_url(settings.redis_url, socket_timeout=5,
                                       socket_connect_timeout=3, health_check_interval=30),
            passwords=Passwords(settings.password_time_cost, settings.password_memory_kib,
                                settings.password_parallelism),
        )
        from signer.signing.dispatch import Dispatcher

        info["dispatcher"] = Dispatcher(services)
        return services

    @cached_property
    def pin_hasher(self) -> Passwords:
        """Argon2id for app-key PINs (cheaper than for passwords: checked on every approval)."""
        return Passwords(self.settings.pin_time_cost, self.settings.pin_memory_kib, 1)

    @cached_property
    def blobs(self) -> FilesystemBlobStore:
        return FilesystemBlobStore(self.settings.blob_dir or self.settings.state_dir / "blobs")

    def hsm(self) -> hsm.Hsm:
        """The HSM handle; only processes that hold the PIN (hsm worker, CLI) may ask for it."""
        if self._hsm is None:
            self._hsm = hsm.Hsm(hsm.HsmConfig(self.settings.hsm_module, self.settings.hsm_token,
                                              self.settings.require_hsm_pin()))
        return self._hsm

    def worker_redis(self) -> Redis:  # type: ignore[type-arg]
        """A connection for rq's blocking dequeue: no read timeout (BLPOP waits minutes; a 5 s
        socket timeout would kill an idle worker), keepalive instead to notice a dead peer."""
        return redis.Redis.from_url(self.settings.redis_url, socket_timeout=None, socket_keepalive=True,
                                    socket_connect_timeout=3, health_check_interval=30)

    def key(self, *parts: str) -> str:
        """A Redis key under this deployment's prefix."""
        return ":".join((self.settings.queue_prefix, *parts))

    @cached_property
    def instance(self) -> str:
        """host:pid, naming this process in heartbeats."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def close(self) -> None:
        self.db.dispose()
        self.redis.close()
