"""The local axis of a deployment (development, tests, the demo): where its configuration lives,
registering our organisations on it, serving it with configuration reloads.

Its configuration (``state/axis/systems.json``, secrets in ``state/axis/secrets/``, mode 0600) lists
the systems allowed to call it. Registering an organisation writes both sides: the local axis's
system entry and our ``axis_accounts`` row, with the same freshly generated secret.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flask import Flask

from exchange.axis import config as axis_config
from exchange.axis.server import AxisServer, create_axis_app
from exchange.axis.store import Store
from signer.interchange.accounts import set_account
from signer.models import Organisation
from signer.principal import SYSTEM
from signer.services import Services
from signer.settings import Settings

log = logging.getLogger(__name__)


def folder(settings: Settings) -> Path:
    return settings.state_dir / "axis"


def config_path(settings: Settings) -> Path:
    return folder(settings) / "systems.json"


def _load(path: Path) -> axis_config.AxisConfig:
    return axis_config.load(path) if path.exists() else axis_config.AxisConfig()


def _secret_file(base: Path, system_id: str) -> Path:
    secrets_dir = base / "secrets"
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = secrets_dir / system_id
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path


def register(services: Services, organisations: Iterable[Organisation], *, system_id: str | None = None,
             extra_units: Iterable[axis_config.Unit] = (), endpoint: str | None = None) -> str:
    """Put ``organisations`` on the local axis under one system id (one per organisation when not
    given) and set their axis accounts; idempotent. Returns the last system id used."""
    path = config_path(services.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = _load(path)
    systems = {s.system_id: s for s in config.systems}
    used = ""
    for org in organisations:
        sid = system_id or f"sys-{org.code.replace('.', '-').lower()}"
        secret_path = _secret_file(path.parent, sid)
        secret = secret_path.read_text().strip()
        unit = axis_config.Unit(code=org.code, name=org.name)
        current = systems.get(sid)
        organs = [u for u in (current.organs if current else ()) if u.code != org.code] + [unit]
        # A unit belongs to one system: drop it from any other.
        for other_id, other in list(systems.items()):
            if other_id != sid and other.owns(org.code):
                systems[other_id] = axis_config.SystemAccount(other.system_id, other.secret,
                                                              [u for u in other.organs if u.code != org.code],
                                                              other.secret_file)
        systems[sid] = axis_config.SystemAccount(sid, secret, organs, f"secrets/{sid}")
        with services.db.session() as db:
            set_account(db, services, SYSTEM, organisation_id=org.id, system_id=sid, secret=secret,
                        endpoint=endpoint)
        used = sid
    extra = list(extra_units)
    if extra:
        sid = "sys-directory"
        secret_path = _secret_file(path.parent, sid)
        systems[sid] = axis_config.SystemAccount(sid, secret_path.read_text().strip(), extra, f"secrets/{sid}")
    axis_config.AxisConfig(list(systems.values())).dump(path)
    return used


class _Reloading:
    """A WSGI app that rebuilds the axis app when the configuration file changes (a demo or an
    admin registering an organisation while the axis runs)."""

    def __init__(self, path: Path, make: Callable[[axis_config.AxisConfig], Flask]) -> None:
        self.path, self.make = path, make
        self.lock = threading.Lock()
        self.stamp: float | None = None
        self.app: Flask | None = None

    def _current(self) -> Flask:
        stamp = self.path.stat().st_mtime if self.path.exists() else 0.0
        with self.lock:
            if self.app is None or stamp != self.stamp:
                self.app, self.stamp = self.make(_load(self.path)), stamp
                log.info("local axis: configuration loaded (%s)", self.path)
            return self.app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self._current().wsgi_app(environ, start_response)


def make_server(settings: Settings, host: str, port: int, *, log_requests: bool = False) -> AxisServer:
    """The deployment's local axis on ``host:port``, storing under ``state/axis``."""
    folder(settings).mkdir(parents=True, exist_ok=True)
    store = Store(folder(settings) / "axis.db")
    outer = Flask("signer.local_axis")
    outer.wsgi_app = _Reloading(  # type: ignore[method-assign]
        config_path(settings),
        lambda config: create_axis_app(config, store, max_packet_bytes=settings.axis_max_packet_bytes))
    return AxisServer(host, port, outer, store, log_requests=log_requests)
