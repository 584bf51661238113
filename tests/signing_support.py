"""A signing world for tests: the built-in PKI, certified credentials, holders with app keys,
and a reference "phone" that approves the way the real one will."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import hsm
from signer import credentials
from signer.devices import enrolment
from signer.models import Credential, CredentialKind
from signer.pki.service import certify_credential, init_builtin
from signer.principal import SYSTEM
from signer.services import Services
from signer.signing import challenge as chal
from tests.conftest import World

PIN = "246810"  # every test holder's app-key PIN


@dataclass
class Holder:
    username: str
    user_id: str
    device_id: str
    key: ec.EllipticCurvePrivateKey


@dataclass
class SigningWorld:
    world: World
    spec: str
    leader_credential: str
    seal_credential: str
    leader: Holder
    clerk: Holder


def _holder(services: Services, world: World, username: str) -> Holder:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with services.db.session() as s:
        device = enrolment.register_app_key_for(s, SYSTEM, services.pin_hasher, user_id=world.users[username],
                                                name="Điện thoại", public_key_der=der, pin=PIN)
        return Holder(username, world.users[username], device.id, key)


def _credential(services: Services, world: World, token: hsm.Hsm, spec: str, kind: CredentialKind,
                owner: str | None) -> str:
    label = f"t-{secrets.token_hex(6)}"
    key = token.generate_key(label, hsm.KeySpec.parse(spec))
    with services.db.session() as s:
        cred = credentials.register_key(s, SYSTEM, name=f"{kind.value} {spec}", kind=kind,
                                        organisation_id=world.office,
                                        owner_user_id=world.users[owner] if owner else None,
                                        key=key, key_spec=spec)
        certify_credential(s, token, SYSTEM, cred, base_url=services.settings.public_url)
        return cred.id


def make_signing_world(services: Services, world: World, token: hsm.Hsm, spec: str) -> SigningWorld:
    with services.db.session() as s:
        init_builtin(s, token, SYSTEM, base_url=services.settings.public_url,
                     organisation="UBND tỉnh Tây Ninh", spec="ec-p256")
    return SigningWorld(
        world, spec,
        leader_credential=_credential(services, world, token, spec, CredentialKind.PERSONAL, "office-leader"),
        seal_credential=_credential(services, world, token, spec, CredentialKind.ORGANISATION, None),
        leader=_holder(services, world, "office-leader"),
        clerk=_holder(services, world, "office-clerk"),
    )


def credential(services: Services, credential_id: str) -> Credential:
    with services.db.session() as s:
        cred = s.get(Credential, credential_id)
        assert cred is not None
        return cred


def device_signature(holder: Holder, challenge: bytes) -> str:
    return base64.b64encode(holder.key.sign(challenge, ec.ECDSA(hashes.SHA256()))).decode()


def recompute_challenge(req: dict[str, Any]) -> bytes:
    """What a phone does: rebuild the challenge from what it shows, never trust the server's."""
    expires = datetime.fromisoformat(req["expires_at"])
    return chal.compute(req["id"], req["credential_id"], expires, [d["dtbsr"] for d in req["documents"]])


def approve(client: Any, world: World, holder: Holder, req: dict[str, Any], *,
            challenge: bytes | None = None, code: str | None = None, pin: str = PIN) -> Any:
    """Sign in as the holder and approve ``req`` with their device (like the phone)."""
    resp = client.post("/v1/session", json={"username": holder.username, "password": world.password})
    assert resp.status_code == 200, resp.json
    c = challenge or recompute_challenge(req)
    body = {"device_id": holder.device_id, "challenge": c.hex(), "signature": device_signature(holder, c),
            "pin": pin, "verification_code": code or chal.verification_code(c)}
    out = client.post(f"/v1/sign-requests/{req['id']}/approval", json=body)
    client.delete("/v1/session")
    return out


def add_images(client: Any, sw: SigningWorld) -> None:
    """The leader's signature image and the organisation's seal, set by the office admin."""
    from tests.images import seal_png, signature_png

    login = client.post("/v1/session", json={"username": "office-admin", "password": sw.world.password})
    assert login.status_code == 200, login.json
    for cred, kind, png in ((sw.leader_credential, "signature", signature_png()),
                            (sw.seal_credential, "seal", seal_png())):
        resp = client.put(f"/v1/credentials/{cred}/images/{kind}", data=png, content_type="image/png")
        assert resp.status_code == 200, resp.json
    client.delete("/v1/session")
