"""`signer demo`: people, credentials with images, enrolled phones and an API key, created once;
a request then goes from the document system to the demo leader's phone to a signed PDF. For the
exchange: a second organisation with its clerk, the key's exchange scope, both on the local axis.
(The exchange walk-through itself runs against `signer run` in tests/e2e/test_run_command.py.)"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from exchange.axis import config as axis_config
from signer import demo, directory
from signer.interchange import local_axis
from signer.interchange.models import AxisAccount
from signer.models import ApiClient, AuditEvent, Organisation, Role, User
from signer.phone import Home
from signer.principal import SYSTEM
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


INIT_CODE = "000.00.00.H53"  # what `signer init` creates
URL = "http://127.0.0.1:8000"


def _rows(services: Services) -> dict[str, int]:
    with services.db.session() as s:
        return {model.__name__: s.scalar(select(func.count()).select_from(model)) or 0
                for model in (Organisation, User, ApiClient, AxisAccount, Device, AuditEvent)}


def _init_org(services: Services) -> str:
    with services.db.session() as s:
        return directory.create_organisation(s, SYSTEM, code=INIT_CODE, name="Ủy ban nhân dân tỉnh (mẫu)").id


def test_demo_puts_a_partner_organisation_and_both_on_the_local_axis(client: Any, services: Services) -> None:
    init_id = _init_org(services)
    made = demo.create(services, INIT_CODE, URL)
    config_path = local_axis.config_path(services.settings)
    assert made.partner_code == demo.PARTNER_CODE and made.axis_config == config_path
    written = config_path.read_bytes()
    rows = _rows(services)
    again = demo.create(services, INIT_CODE, URL)
    assert again == made
    assert _rows(services) == rows  # nothing new, not even an audit row
    assert config_path.read_bytes() == written

    with services.db.session() as s:
        partner = s.scalar(select(Organisation).where(Organisation.code == demo.PARTNER_CODE))
        assert partner is not None and partner.parent_id == init_id  # a child of the init organisation
        clerk = s.scalar(select(User).where(User.username == demo.PARTNER_CLERK))
        assert clerk is not None and clerk.organisation_id == partner.id
        assert clerk.roles == {Role.CLERK}
        key_id = made.api_key_file.read_text().split("_")[1]
        api_client = s.scalar(select(ApiClient).where(ApiClient.key_id == key_id))
        assert api_client is not None and api_client.scope_set == {"sign", "verify", "read", "exchange"}
        accounts = {a.organisation_id: a.system_id for a in s.scalars(select(AxisAccount))}
    assert set(accounts) == {init_id, partner.id} and len(set(accounts.values())) == 2  # one system id each
    config = axis_config.load(config_path)
    owners = {u.code: sys.system_id for sys in config.systems for u in sys.organs}
    assert owners == {INIT_CODE: accounts[init_id], demo.PARTNER_CODE: accounts[partner.id]}
    assert config_path.stat().st_mode & 0o077 == 0
    password = made.password_files[demo.PARTNER_CLERK]
    assert password.stat().st_mode & 0o077 == 0
    signed_in = client.post("/v1/session", json={"username": demo.PARTNER_CLERK, "password": password.read_text()})
    assert signed_in.status_code == 200, signed_in.json


def test_an_older_demo_key_gains_the_exchange_scope_once(services: Services) -> None:
    org_id = _init_org(services)
    with services.db.session() as s:  # what `signer demo` made before the exchange
        old = directory.create_api_client(s, SYSTEM, name=demo.API_CLIENT, organisation_id=org_id,
                                          scopes={"sign", "verify", "read"})
    folder = services.settings.state_dir / "secrets"
    folder.mkdir(parents=True, mode=0o700)
    (folder / "demo-api-key").write_text(old.key.token)
    made = demo.create(services, INIT_CODE, URL)
    assert made.api_key_file.read_text() == old.key.token  # the same key, no second file
    assert sorted(p.name for p in folder.iterdir() if "api-key" in p.name) == ["demo-api-key"]
    with services.db.session() as s:
        client = s.get(ApiClient, old.client.id)
        assert client is not None and "exchange" in client.scope_set
        assert s.scalar(select(func.count()).select_from(ApiClient)) == 1
    rows = _rows(services)
    demo.create(services, INIT_CODE, URL)
    assert _rows(services) == rows
