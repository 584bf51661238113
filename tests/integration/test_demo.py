"""`signer demo`: people, credentials with images, enrolled phones and an API key, created once;
a request then goes from the document system to the demo leader's phone to a signed PDF."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from signer import demo
from signer.models import User
from signer.phone import Home
from signer.services import Services
from signer.signing import challenge as chal
from signer.signing.models import Device
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.pdfs import decision_pdf
from tests.signing_support import recompute_challenge

OFFICE_CODE = "000.00.01.H53"


def _counts(services: Services) -> tuple[int, int]:
    with services.db.session() as s:
        return (s.scalar(select(func.count()).select_from(User)) or 0,
                s.scalar(select(func.count()).select_from(Device)) or 0)


def test_demo_data_signs_a_pdf_end_to_end(client: Any, services: Services, world: World) -> None:
    made = demo.create(services, OFFICE_CODE, "http://127.0.0.1:8000")
    before = _counts(services)
    again = demo.create(services, OFFICE_CODE, "http://127.0.0.1:8000")
    assert (again.leader_credential, again.seal_credential) == (made.leader_credential, made.seal_credential)
    assert _counts(services) == before  # idempotent
    for path in (made.api_key_file, made.pin_file, *made.password_files.values()):
        assert path.stat().st_mode & 0o077 == 0

    phone = Home(made.phones[demo.LEADER])
    profile = phone.profile()
    with services.db.session() as s:
        device = s.get(Device, profile["device_id"])
        assert device is not None and device.status == "active"
        assert device.public_key_der == phone.key().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    headers = {"Authorization": f"Bearer {made.api_key_file.read_text()}"}
    req = client.post("/v1/sign-requests", headers=headers, json={
        "credential_id": made.leader_credential, "documents": [{
            "name": "Quyết định (demo)", "format": "pades", "profile": "approved", "level": "B-T",
            "placement": {"anchor": "Nguyễn Văn An"}, "content": base64.b64encode(decision_pdf()).decode()}]}).json
    c = recompute_challenge(req)
    client.post("/v1/session", json={"username": demo.LEADER,
                                     "password": made.password_files[demo.LEADER].read_text()})
    approved = client.post(f"/v1/sign-requests/{req['id']}/approval", json={
        "device_id": profile["device_id"], "challenge": c.hex(), "verification_code": req["verification_code"],
        "pin": made.pin_file.read_text(),
        "signature": base64.b64encode(phone.key().sign(c, ec.ECDSA(hashes.SHA256()))).decode()})
    assert approved.status_code == 202, approved.json
    assert chal.verification_code(c) == req["verification_code"]
    run_hsm_worker(services, burst=True)
    done = client.get(f"/v1/sign-requests/{req['id']}", headers=headers).json
    assert done["state"] == "COMPLETED", done
    assert client.get(done["documents"][0]["signed_url"], headers=headers).data.startswith(b"%PDF")
