"""Sole control, from the web tier's side: the web app is built from an environment without any
HSM PIN, so it cannot open the token; an approved request waits in SIGNING until an hsm worker
takes it, and only then completes."""

from __future__ import annotations

from typing import Any

import pytest

import hsm
from signer.app import create_app
from signer.services import Services
from signer.settings import Settings, SettingsError
from signer.supervisor import child_env, service_children
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.signing_support import SigningWorld, approve, make_signing_world
from tests.support import SoftHsm, worker_env

# Which process holds the PIN: nothing here depends on the database backend.
pytestmark = pytest.mark.one_db


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def test_the_web_app_loads_settings_without_a_pin(services: Services, softhsm: SoftHsm, tmp_path: Any) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin)
    full = dict(worker_env(services.settings, softhsm), SIGNER_HSM_PIN_FILE=str(pin_file),
                SIGNER_SECRET_KEY="w" * 40)
    web = next(c for c in service_children("127.0.0.1:0", 1, full) if c.name == "web")
    assert web.env == child_env(full)  # what the supervisor hands to gunicorn
    app = create_app(Settings.from_env(web.env))
    loaded: Services = app.extensions["signer"]
    try:
        assert loaded.settings.hsm_pin is None
        with pytest.raises(SettingsError):
            loaded.hsm()
    finally:
        loaded.close()


def test_an_approved_request_waits_for_an_hsm_worker(client: Any, services: Services, sw: SigningWorld) -> None:
    headers = {"Authorization": f"Bearer {sw.world.api_key}"}
    created = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": [
        {"name": "Quyết định", "format": "raw", "hash": "12" * 32}]}, headers=headers).json
    assert approve(client, sw.world, sw.leader, created).status_code == 202
    waited = client.get(f"/v1/sign-requests/{created['id']}?wait=2", headers=headers).json
    assert waited["state"] == "SIGNING" and waited["documents"][0]["signature"] is None
    run_hsm_worker(services, burst=True)
    assert client.get(f"/v1/sign-requests/{created['id']}", headers=headers).json["state"] == "COMPLETED"
