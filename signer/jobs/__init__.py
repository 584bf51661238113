"""rq jobs: plain importable functions that take ids; what they need is in the database.

A worker process sets its :class:`~signer.services.Services` once with :func:`bind`; jobs fetch
it with :func:`services`. Outside a worker (tests, CLI) the services come from the environment.
"""

from __future__ import annotations

from signer.services import Services
from signer.settings import Settings

_services: Services | None = None


def bind(services: Services) -> None:
    global _services
    _services = services


def services() -> Services:
    global _services
    if _services is None:
        _services = Services.create(Settings.from_env())
    return _services
