"""Enrolment and device security: one-time links, admin approval (not by the holder), app-key PINs
with lock-out, disabled devices, and passkeys (a software authenticator) through the hsm worker's
checks: origin, user verification, signature counter, foreign devices."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

import hsm
from signer.devices import passkeys
from signer.models import AuditEvent
from signer.services import Services
from signer.signing import challenge as chal
from signer.signing.models import Device
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.signing_support import SigningWorld, make_signing_world, recompute_challenge
from tests.soft_authenticator import SoftAuthenticator

PIN = "975310"


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


@contextmanager
def signed_in(client: Any, world: World, username: str) -> Iterator[None]:
    assert client.post("/v1/session", json={"username": username, "password": world.password}).status_code == 200
    try:
        yield
    finally:
        client.delete("/v1/session")


def enrolment_link(client: Any, world: World, username: str, kind: str | None = None) -> str:
    with signed_in(client, world, "office-ra"):
        resp = client.post("/v1/admin/enrolments", json={"user_id": world.users[username], "kind": kind})
    assert resp.status_code == 201, resp.json
    return str(resp.json["token"])


def enrol_app_key(client: Any, world: World, username: str) -> tuple[str, ec.EllipticCurvePrivateKey]:
    token = enrolment_link(client, world, username, "app_key")
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    resp = client.post(f"/v1/enrolments/{token}/app-key", json={
        "name": "Điện thoại của tôi", "public_key": base64.b64encode(der).decode(), "pin": PIN})
    assert resp.status_code == 201 and resp.json["status"] == "pending", resp.json
    return str(resp.json["id"]), key


def enrol_passkey(client: Any, services: Services, world: World, username: str) -> tuple[str, SoftAuthenticator]:
    rp = passkeys.RelyingParty.from_public_url(services.settings.public_url)
    authenticator = SoftAuthenticator(rp.id, rp.origin)
    token = enrolment_link(client, world, username, "webauthn")
    options = client.post(f"/v1/enrolments/{token}/passkey/options").json
    assert options["authenticatorSelection"]["userVerification"] == "required"
    resp = client.post(f"/v1/enrolments/{token}/passkey", json={"name": "iPhone",
                                                                "credential": authenticator.create(options)})
    assert resp.status_code == 201, resp.json
    return str(resp.json["id"]), authenticator


def approve_device(client: Any, world: World, device_id: str, admin: str = "office-admin") -> Any:
    with signed_in(client, world, admin):
        return client.post(f"/v1/devices/{device_id}/approve")


def new_request(client: Any, sw: SigningWorld) -> dict[str, Any]:
    doc = {"name": "hash", "format": "raw", "hash": "ab" * 32}
    resp = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": [doc]},
                       headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 202
    return dict(resp.json)


def approve_with_app_key(client: Any, world: World, req: dict[str, Any], device_id: str,
                         key: ec.EllipticCurvePrivateKey, pin: str = PIN) -> Any:
    c = recompute_challenge(req)
    body = {"device_id": device_id, "challenge": c.hex(), "pin": pin, "verification_code": chal.verification_code(c),
            "signature": base64.b64encode(key.sign(c, ec.ECDSA(hashes.SHA256()))).decode()}
    with signed_in(client, world, "office-leader"):
        return client.post(f"/v1/sign-requests/{req['id']}/approval", json=body)


def approve_with_passkey(client: Any, world: World, req: dict[str, Any], device_id: str,
                         authenticator: SoftAuthenticator, **kwargs: Any) -> Any:
    c = recompute_challenge(req)
    body = {"device_id": device_id, "challenge": c.hex(), "verification_code": chal.verification_code(c),
            "passkey": authenticator.get(c, **kwargs)}
    with signed_in(client, world, "office-leader"):
        return client.post(f"/v1/sign-requests/{req['id']}/approval", json=body)


def state(client: Any, sw: SigningWorld, req: dict[str, Any]) -> dict[str, Any]:
    return dict(client.get(f"/v1/sign-requests/{req['id']}",
                           headers={"Authorization": f"Bearer {sw.world.api_key}"}).json)


def actions(services: Services, target: str) -> list[str]:
    with services.db.session() as s:
        return list(s.scalars(select(AuditEvent.action).where(AuditEvent.target == target).order_by(AuditEvent.seq)))


def test_app_key_enrolment_needs_an_admin_and_then_approves(client: Any, services: Services,
                                                            sw: SigningWorld) -> None:
    world = sw.world
    device_id, key = enrol_app_key(client, world, "office-leader")
    req = new_request(client, sw)
    pending = approve_with_app_key(client, world, req, device_id, key)
    assert pending.status_code == 409 and pending.json["type"] == "urn:signer:problem:device-unavailable"
    # RA officers make links but do not approve devices; the holder never approves their own.
    assert approve_device(client, world, device_id, "office-ra").status_code == 403
    assert approve_device(client, world, device_id).status_code == 200
    assert approve_with_app_key(client, world, req, device_id, key).status_code == 202
    run_hsm_worker(services, burst=True)
    assert state(client, sw, req)["state"] == "COMPLETED"
    assert actions(services, f"device:{device_id}") == ["device.enrol", "device.approve"]


def test_enrolment_links_are_single_use_and_for_holders(client: Any, services: Services, world: World) -> None:
    token = enrolment_link(client, world, "office-clerk", "app_key")
    assert client.get(f"/v1/enrolments/{token}").json["username"] == "office-clerk"
    der = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.DER,
                                                                           PublicFormat.SubjectPublicKeyInfo)
    body = {"name": "máy", "public_key": base64.b64encode(der).decode(), "pin": PIN}
    assert client.post(f"/v1/enrolments/{token}/app-key", json=body).status_code == 201
    again = client.post(f"/v1/enrolments/{token}/app-key", json=body)
    assert again.status_code == 404 and again.json["type"] == "urn:signer:problem:not-found"
    assert client.post("/v1/enrolments/enr_made-up/app-key", json=body).status_code == 404
    with signed_in(client, world, "office-ra"):
        auditor = client.post("/v1/admin/enrolments", json={"user_id": world.users["office-auditor"]})
        foreign = client.post("/v1/admin/enrolments", json={"user_id": world.users["other-admin"]})
    assert auditor.status_code == 422 and foreign.status_code == 404
    with signed_in(client, world, "office-clerk"):
        assert client.post("/v1/admin/enrolments", json={"user_id": world.users["office-clerk"]}).status_code == 403


def test_five_wrong_pins_lock_the_app_key_until_an_admin_unlocks_it(client: Any, services: Services,
                                                                    sw: SigningWorld) -> None:
    world = sw.world
    device_id, key = enrol_app_key(client, world, "office-leader")
    assert approve_device(client, world, device_id).status_code == 200
    req = new_request(client, sw)
    for attempt in range(1, 6):
        wrong = approve_with_app_key(client, world, req, device_id, key, pin="000000")
        assert wrong.status_code == 403 and wrong.json["type"] == "urn:signer:problem:wrong-pin"
        assert ("locked" in wrong.json["detail"]) is (attempt == 5)
    assert state(client, sw, req)["state"] == "AWAITING_APPROVAL"  # nothing was approved
    locked = approve_with_app_key(client, world, req, device_id, key)  # even the right PIN
    assert locked.status_code == 409 and "locked" in locked.json["detail"]
    with signed_in(client, world, "office-leader"):  # the holder cannot unlock it
        assert client.post(f"/v1/devices/{device_id}/enable").status_code == 403
    with signed_in(client, world, "office-admin"):
        assert client.post(f"/v1/devices/{device_id}/enable").json["status"] == "active"
    assert approve_with_app_key(client, world, req, device_id, key).status_code == 202
    trail = actions(services, f"device:{device_id}")
    assert trail.count("device.wrong_pin") == 4 and trail.count("device.lock") == 1 and "device.unlock" in trail


def test_a_device_disabled_after_approving_signs_nothing(client: Any, services: Services, sw: SigningWorld) -> None:
    world = sw.world
    device_id, key = enrol_app_key(client, world, "office-leader")
    approve_device(client, world, device_id)
    req = new_request(client, sw)
    assert approve_with_app_key(client, world, req, device_id, key).status_code == 202
    with signed_in(client, world, "office-leader"):  # a lost phone: its holder switches it off
        assert client.post(f"/v1/devices/{device_id}/disable").json["status"] == "disabled"
        mine = client.get("/v1/devices").json["items"]
    assert [d["id"] for d in mine] == [sw.leader.device_id, device_id]
    run_hsm_worker(services, burst=True)
    final = state(client, sw, req)
    assert (final["state"], final["reason"]) == ("FAILED", "DEVICE_NOT_ALLOWED")
    second = new_request(client, sw)
    assert approve_with_app_key(client, world, second, device_id, key).status_code == 409


def test_passkey_approval_is_checked_by_the_hsm_worker(client: Any, services: Services, sw: SigningWorld) -> None:
    world = sw.world
    device_id, authenticator = enrol_passkey(client, services, world, "office-leader")
    approve_device(client, world, device_id)

    good = new_request(client, sw)
    assert approve_with_passkey(client, world, good, device_id, authenticator).status_code == 202
    run_hsm_worker(services, burst=True)
    assert state(client, sw, good)["state"] == "COMPLETED"
    with services.db.session() as s:
        device = s.get(Device, device_id)
        assert device is not None and device.sign_count == authenticator.counter

    cases = {  # each: what the authenticator is made to do -> the request must sign nothing
        "wrong origin": {"origin": "https://phishing.example"},
        "no user verification": {"user_verified": False},
        "counter went back": {"counter": 1},
    }
    for name, kwargs in cases.items():
        req = new_request(client, sw)
        assert approve_with_passkey(client, world, req, device_id, authenticator, **kwargs).status_code == 202, name
        run_hsm_worker(services, burst=True)
        final = state(client, sw, req)
        assert (final["state"], final["reason"]) == ("FAILED", "APPROVAL_INVALID"), name
        assert final["documents"][0]["state"] == "FAILED"


def test_passkey_of_another_device_or_challenge_is_refused(client: Any, services: Services,
                                                           sw: SigningWorld) -> None:
    world = sw.world
    device_id, authenticator = enrol_passkey(client, services, world, "office-leader")
    approve_device(client, world, device_id)
    other = SoftAuthenticator(authenticator.rp_id, authenticator.origin)
    req = new_request(client, sw)
    foreign = approve_with_passkey(client, world, req, device_id, other)
    assert foreign.status_code == 422 and "not this device" in foreign.json["detail"]
    # An assertion over another request's challenge: accepted by the web tier, refused by the worker.
    elsewhere = new_request(client, sw)
    c = recompute_challenge(req)
    body = {"device_id": device_id, "challenge": c.hex(), "verification_code": chal.verification_code(c),
            "passkey": authenticator.get(recompute_challenge(elsewhere))}
    with signed_in(client, world, "office-leader"):
        assert client.post(f"/v1/sign-requests/{req['id']}/approval", json=body).status_code == 202
    run_hsm_worker(services, burst=True)
    final = state(client, sw, req)
    assert (final["state"], final["reason"]) == ("FAILED", "APPROVAL_INVALID")
    with services.db.session() as s:
        details = [json.loads(d) for d in s.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "approval.reject", AuditEvent.target == f"sign_request:{req['id']}"))]
    assert details and details[0]["reason"] == "APPROVAL_INVALID"
