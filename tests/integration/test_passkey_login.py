"""Signing in with a passkey (a discoverable credential, user verification required), with the
software authenticator: single-use challenges, only active devices of active people, and every
refusal the same 401 with nobody signed in."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from webauthn.helpers import base64url_to_bytes

from signer.devices import passkeys
from signer.models import AuditEvent
from signer.services import Services
from signer.signing.models import Device
from tests.conftest import World
from tests.integration.test_devices import approve_device, enrol_passkey, signed_in
from tests.soft_authenticator import SoftAuthenticator, b64url


def rp(services: Services) -> passkeys.RelyingParty:
    return passkeys.RelyingParty.from_public_url(services.settings.public_url)


def options(client: Any, services: Services) -> tuple[str, bytes]:
    """A fresh login_id and its challenge, after checking the options offer discoverable passkeys."""
    resp = client.post("/v1/session/passkey/options")
    assert resp.status_code == 200, resp.json
    body = resp.json
    assert body["rpId"] == rp(services).id and body["userVerification"] == "required"
    assert body.get("allowCredentials", []) == []
    return str(body["login_id"]), bytes(base64url_to_bytes(body["challenge"]))


def sign_in(client: Any, services: Services, authenticator: SoftAuthenticator, **kwargs: Any) -> Any:
    login_id, challenge = options(client, services)
    return client.post("/v1/session/passkey", json={"login_id": login_id,
                                                    "credential": authenticator.get(challenge, **kwargs)})


def whoami(client: Any) -> Any:
    resp = client.get("/v1/me")
    return resp.json["id"] if resp.status_code == 200 else None


def refused(resp: Any) -> bool:
    return bool(resp.status_code == 401 and resp.json["type"] == "urn:signer:problem:unauthenticated")


def sign_count(services: Services, device_id: str) -> int:
    with services.db.session() as s:
        device = s.get(Device, device_id)
        assert device is not None
        return device.sign_count


def login_events(services: Services) -> list[tuple[str, str, dict[str, Any]]]:
    with services.db.session() as s:
        rows = s.execute(select(AuditEvent.outcome, AuditEvent.target, AuditEvent.detail)
                         .where(AuditEvent.action == "session.login").order_by(AuditEvent.seq))
        return [(outcome, target, json.loads(detail)) for outcome, target, detail in rows]


def active_passkey(client: Any, services: Services, world: World) -> tuple[str, SoftAuthenticator]:
    device_id, authenticator = enrol_passkey(client, services, world, "office-leader")
    assert approve_device(client, world, device_id).status_code == 200
    return device_id, authenticator


def test_an_approved_passkey_signs_its_holder_in(client: Any, services: Services, world: World) -> None:
    device_id, authenticator = active_passkey(client, services, world)
    leader = world.users["office-leader"]
    assert whoami(client) is None
    resp = sign_in(client, services, authenticator)
    assert resp.status_code == 200 and resp.json["username"] == "office-leader", resp.json
    me = client.get("/v1/me").json
    assert me["kind"] == "user" and me["id"] == leader and me["roles"] == ["leader"]
    assert sign_count(services, device_id) == 1
    assert login_events(services)[-1] == ("success", f"user:{leader}",
                                          {"method": "passkey", "device_id": device_id})
    client.delete("/v1/session")
    # A userHandle (what real phones send for a discoverable credential) must name the holder.
    login_id, challenge = options(client, services)
    credential = authenticator.get(challenge)
    credential["response"]["userHandle"] = b64url(leader.encode())
    assert client.post("/v1/session/passkey", json={"login_id": login_id, "credential": credential}).status_code == 200
    assert whoami(client) == leader


def test_a_login_id_serves_one_attempt(client: Any, services: Services, world: World) -> None:
    _, authenticator = active_passkey(client, services, world)
    login_id, challenge = options(client, services)
    body = {"login_id": login_id, "credential": authenticator.get(challenge)}
    assert client.post("/v1/session/passkey", json=body).status_code == 200
    client.delete("/v1/session")
    assert refused(client.post("/v1/session/passkey", json={"login_id": login_id,
                                                            "credential": authenticator.get(challenge)}))
    # A failed attempt uses the challenge up too: no second try with a corrected assertion.
    login_id, challenge = options(client, services)
    bad = {"login_id": login_id, "credential": authenticator.get(challenge, origin="https://evil.example")}
    assert refused(client.post("/v1/session/passkey", json=bad))
    good = {"login_id": login_id, "credential": authenticator.get(challenge)}
    assert refused(client.post("/v1/session/passkey", json=good))
    unknown = {"login_id": "no-such-login", "credential": authenticator.get(challenge)}
    assert refused(client.post("/v1/session/passkey", json=unknown))
    assert whoami(client) is None
    # The challenge lives in Redis only, with an expiry.
    login_id, _ = options(client, services)
    assert 0 < services.redis.ttl(services.key("passkey-login", login_id)) <= 120


def test_pending_and_disabled_passkeys_do_not_sign_in(client: Any, services: Services, world: World) -> None:
    device_id, authenticator = enrol_passkey(client, services, world, "office-leader")
    assert refused(sign_in(client, services, authenticator))
    assert whoami(client) is None
    assert approve_device(client, world, device_id).status_code == 200
    with signed_in(client, world, "office-admin"):
        assert client.post(f"/v1/devices/{device_id}/disable").json["status"] == "disabled"
    assert refused(sign_in(client, services, authenticator))
    assert whoami(client) is None
    reasons = [detail.get("reason") for outcome, _, detail in login_events(services) if outcome == "denied"]
    assert reasons == ["device-pending", "device-disabled"]


def test_bad_assertions_are_refused_and_sign_nobody_in(client: Any, services: Services, world: World) -> None:
    device_id, authenticator = active_passkey(client, services, world)
    assert sign_in(client, services, authenticator).status_code == 200  # counter 1
    client.delete("/v1/session")
    attempts: list[dict[str, Any]] = [{"origin": "https://evil.example"}, {"origin": "http://127.0.0.1:8000"},
                {"user_verified": False}, {"counter": 1}, {"counter": 0}]
    for kwargs in attempts:
        assert refused(sign_in(client, services, authenticator, **kwargs)), kwargs
        assert whoami(client) is None, kwargs
    assert sign_count(services, device_id) == 1
    # Another person's userHandle on this passkey's assertion.
    login_id, challenge = options(client, services)
    credential = authenticator.get(challenge, counter=7)
    credential["response"]["userHandle"] = b64url(world.users["office-clerk"].encode())
    assert refused(client.post("/v1/session/passkey", json={"login_id": login_id, "credential": credential}))
    # Refusals do not lock the passkey out; the real thing still works.
    assert sign_in(client, services, authenticator, counter=9).status_code == 200
    assert sign_count(services, device_id) == 9


def test_unknown_credentials_and_bad_bodies(client: Any, services: Services, world: World) -> None:
    active_passkey(client, services, world)
    stranger = SoftAuthenticator(rp(services).id, rp(services).origin)
    assert refused(sign_in(client, services, stranger))
    login_id, _ = options(client, services)
    garbled = client.post("/v1/session/passkey", json={"login_id": login_id, "credential": {"id": "x"}})
    assert refused(garbled)
    extra = client.post("/v1/session/passkey", json={"login_id": login_id, "credential": {}, "username": "x"})
    assert extra.status_code == 422 and extra.json["type"] == "urn:signer:problem:invalid-input"
    assert whoami(client) is None
    assert garbled.json["detail"] == sign_in(client, services, stranger).json["detail"]  # one message for all
