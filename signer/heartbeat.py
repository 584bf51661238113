"""Worker heartbeats in Redis: a sorted set per role, scored by the time of the last beat."""

from __future__ import annotations

import json
import time
from typing import Any

from signer.services import Services


def beat(services: Services, role: str, info: dict[str, Any] | None = None) -> None:
    """Record that this process (a worker of ``role``) is alive now."""
    now = time.time()
    ttl = services.settings.heartbeat_ttl_s
    pipe = services.redis.pipeline()
    pipe.zadd(services.key("heartbeats", role), {services.instance: now})
    pipe.zremrangebyscore(services.key("heartbeats", role), 0, now - 10 * ttl)
    pipe.set(services.key("heartbeat", role, services.instance),
             json.dumps({"at": now, **(info or {})}), ex=ttl)
    pipe.execute()


def alive(services: Services, role: str) -> list[str]:
    """Instances of ``role`` that beat within the heartbeat TTL."""
    since = time.time() - services.settings.heartbeat_ttl_s
    members = services.redis.zrangebyscore(services.key("heartbeats", role), since, "+inf")
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


def forget(services: Services, role: str) -> None:
    """Remove this process's beat (clean shutdown)."""
    services.redis.zrem(services.key("heartbeats", role), services.instance)
    services.redis.delete(services.key("heartbeat", role, services.instance))
