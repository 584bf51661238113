"""What every ``signer`` command shares: lazily created services (nothing opens at import)."""

from __future__ import annotations

import click

from signer.services import Services
from signer.settings import Settings


class Context:
    def __init__(self) -> None:
        self._services: Services | None = None

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services.create(Settings.from_env())
        return self._services

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None


pass_ctx = click.make_pass_decorator(Context, ensure=True)
