"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.settings import Settings
from tests.support import SoftHsm


@pytest.fixture
def cli_env(settings: Settings, softhsm: SoftHsm, tmp_path: Path) -> dict[str, str]:
    """The environment a ``signer`` command needs to reach this test's database, Redis and token."""
    return {
        "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
        "SIGNER_STATE_DIR": str(tmp_path / "state"), "SIGNER_HSM_MODULE": softhsm.module,
        "SIGNER_HSM_TOKEN": settings.hsm_token, "SIGNER_HSM_PIN": softhsm.pin,
        "SIGNER_HSM_SO_PIN": softhsm.so_pin, "SOFTHSM2_CONF": str(softhsm.conf),
        "SIGNER_PASSWORD_TIME_COST": "1", "SIGNER_PASSWORD_MEMORY_KIB": "64",
    }
