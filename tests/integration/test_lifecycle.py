"""Certificate lifecycle requests: approval rules, and execution by the hsm worker's code on real
SoftHSM2 keys with the built-in CA, checked by openssl (CSR, chain, CRL reasons)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

import hsm
from signer.errors import Conflict, Forbidden, InvalidInput, NotFound
from signer.lifecycle import requests as lifecycle
from signer.lifecycle.executor import Context, execute
from signer.lifecycle.models import CertificateRequest
from signer.lifecycle.policy import PolicyBody, set_policy
from signer.models import AuditEvent, Credential, Role
from signer.pki.revocation import revoke_credential
from signer.principal import SYSTEM, Principal
from signer.services import Services
from signer.signing.models import Crl, IssuedCertificate, PkiAuthority
from tests.conftest import World
from tests.signing_support import SigningWorld, make_signing_world


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def person(world: World, username: str, *roles: Role) -> Principal:
    org = world.other if username.startswith("other") else world.province if username == "root-admin" else world.office
    return Principal(kind="user", id=world.users[username], organisation_id=org, roles=frozenset(roles))


def ra(world: World) -> Principal:
    return person(world, "office-ra", Role.RA_OFFICER)


def admin(world: World) -> Principal:
    return person(world, "office-admin", Role.ADMIN)


def root_admin(world: World) -> Principal:
    return person(world, "root-admin", Role.ADMIN)


def issue_body(world: World, **over: Any) -> lifecycle.RequestBody:
    fields: dict[str, Any] = {
        "action": "issue", "organisation_id": world.office, "name": "Chữ ký Chánh Văn phòng",
        "owner_user_id": world.users["office-leader"], "profile": "personal-signing", "subject_profile": "leader",
        "subject": {"full_name": "Nguyễn Thị Hường", "title": "Chánh Văn phòng", "citizen_id": "079201001234",
                    "province": "Tây Ninh"}, "key_spec": "ec-p256"}
    return lifecycle.RequestBody.model_validate(fields | over)


def submit(services: Services, actor: Principal, body: lifecycle.RequestBody, **kw: Any) -> str:
    with services.db.session() as s:
        return lifecycle.submit(s, actor, body, **kw).id


def decide(services: Services, actor: Principal, request_id: str, decision: str = "approve", **kw: Any) -> str:
    with services.db.session() as s:
        return lifecycle.decide(s, actor, request_id, decision, **kw).status  # type: ignore[arg-type]


def run(services: Services, token: hsm.Hsm, request_id: str) -> CertificateRequest:
    execute(Context(services.db, token, services.settings.public_url), request_id)
    with services.db.session() as s:
        request = s.get(CertificateRequest, request_id)
        assert request is not None
        _ = request.items, request.decisions
        s.expunge_all()
        return request


def openssl(*args: str, stdin: bytes | None = None) -> str:
    out = subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)
    assert out.returncode == 0, out.stderr.decode()
    return (out.stdout + out.stderr).decode()


def authority_pem(services: Services, slug: str) -> bytes:
    with services.db.session() as s:
        row = s.query(PkiAuthority).filter_by(slug=slug).one()
        return x509.load_der_x509_certificate(row.certificate_der).public_bytes(Encoding.PEM)


# -- approval rules ------------------------------------------------------------------------------


def test_two_approvers_no_self_approval_and_rejection(services: Services, sw: SigningWorld) -> None:
    world = sw.world
    with services.db.session() as s:
        set_policy(s, admin(world), "issue", "personal-signing",
                   PolicyBody(approvals_required=2, roles={Role.ADMIN, Role.RA_OFFICER}, ttl_hours=4))
    rid = submit(services, ra(world), issue_body(world))
    with pytest.raises(Forbidden, match="own request"):
        decide(services, ra(world), rid)
    with pytest.raises(Forbidden):  # a clerk holds none of the policy's roles
        decide(services, person(world, "office-clerk", Role.CLERK), rid)
    with pytest.raises(NotFound):  # another organisation does not even see it
        decide(services, person(world, "other-admin", Role.ADMIN), rid)
    assert decide(services, admin(world), rid) == "pending"  # N-1 approvals: still pending
    with pytest.raises(Conflict, match="already decided"):
        decide(services, admin(world), rid)
    assert decide(services, root_admin(world), rid) == "approved"

    rejected = submit(services, ra(world), issue_body(world, name="Khác"))
    assert decide(services, admin(world), rejected, "reject", comment="sai chức vụ") == "rejected"
    with pytest.raises(Conflict, match="rejected"):
        decide(services, root_admin(world), rejected)


def test_an_expired_request_cannot_be_approved(services: Services, sw: SigningWorld) -> None:
    world = sw.world
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=200)
    rid = submit(services, ra(world), issue_body(world), now=past)
    with pytest.raises(Conflict, match="expired"):
        decide(services, admin(world), rid)
    with services.db.session() as s:
        request = s.get(CertificateRequest, rid)
        assert request is not None
        assert request.status == "expired"
    # The scheduler's sweep expires the ones nobody touched.
    other = submit(services, ra(world), issue_body(world, name="Khác"), now=past)
    with services.db.session() as s:
        assert lifecycle.expire_due(s) == 1
        assert s.get(CertificateRequest, other).status == "expired"  # type: ignore[union-attr]


def test_bad_requests_change_nothing(services: Services, sw: SigningWorld) -> None:
    world = sw.world
    with services.db.session() as s:
        before = s.query(CertificateRequest).count()
    bad = [
        (issue_body(world, subject={"title": "x"}), InvalidInput),  # full_name missing
        (issue_body(world, subject={"full_name": "A", "citizen_id": "12"}), InvalidInput),  # not 12 digits
        (issue_body(world, key_spec="rsa-4096"), InvalidInput),  # not allowed by the profile
        (issue_body(world, owner_user_id=world.users["office-clerk"]), InvalidInput),  # personal keys: leaders
        (issue_body(world, profile="no-such"), InvalidInput),
    ]
    for body, error in bad:
        with pytest.raises(error):
            submit(services, ra(world), body)
    with pytest.raises(Forbidden):
        submit(services, person(world, "office-auditor", Role.AUDITOR), issue_body(world))
    with pytest.raises(Conflict, match="resume needs suspended"):
        submit(services, ra(world), lifecycle.RequestBody(action="resume", organisation_id=world.office,  # type: ignore[arg-type]
                                                          credential_ids=[sw.leader_credential]))
    with services.db.session() as s:
        assert s.query(CertificateRequest).count() == before


# -- execution -----------------------------------------------------------------------------------


def test_issue_generates_the_key_in_the_hsm_and_certifies_it(services: Services, sw: SigningWorld,
                                                               token: hsm.Hsm, tmp_path: Path) -> None:
    world = sw.world
    rid = submit(services, ra(world), issue_body(world))
    assert decide(services, admin(world), rid) == "approved"
    request = run(services, token, rid)
    assert request.status == "completed", request.items[0].error
    item = request.items[0]
    assert item.status == "done" and item.csr_der and item.credential_id

    csr = tmp_path / "req.pem"
    csr.write_bytes(x509.load_der_x509_csr(item.csr_der).public_bytes(Encoding.PEM))
    assert "verify OK" in openssl("req", "-verify", "-noout", "-in", str(csr))

    with services.db.session() as s:
        cred = s.get(Credential, item.credential_id)
        assert cred is not None and cred.status == "active" and cred.profile == "personal-signing"
        assert cred.owner_user_id == world.users["office-leader"]
        leader = x509.load_der_x509_certificate(cred.certificate_der or b"")
        label = cred.hsm_key_label
    (tmp_path / "leaf.pem").write_bytes(leader.public_bytes(Encoding.PEM))
    (tmp_path / "root.pem").write_bytes(authority_pem(services, "root"))
    (tmp_path / "issuing.pem").write_bytes(authority_pem(services, "issuing"))
    assert openssl("verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "issuing.pem"),
                   str(tmp_path / "leaf.pem")).strip().endswith("OK")
    assert leader.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Nguyễn Thị Hường"
    assert leader.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "CCCD:079201001234"
    assert leader.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Văn phòng UBND tỉnh"
    ku = leader.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.content_commitment and not ku.key_cert_sign
    # The key is the token's, not extractable; the certificate object sits next to it.
    assert x509.load_der_x509_csr(item.csr_der).public_key() == leader.public_key()
    assert token.key_info(label).public_key_der == cred.public_key_der
    attributes = token.key_attributes(label)
    assert attributes["sensitive"] and not attributes["extractable"]
    assert token.certificate(label) == leader.public_bytes(Encoding.DER)

    with services.db.session() as s:
        actions = [e.action for e in s.query(AuditEvent).all()]
    assert {"certificate_request.issue", "certificate_request.approve", "credential.register",
            "certificate.issue", "certificate_request.execute"} <= set(actions)


def test_execution_runs_once(services: Services, sw: SigningWorld, token: hsm.Hsm) -> None:
    world = sw.world
    rid = submit(services, ra(world), issue_body(world))
    decide(services, admin(world), rid)
    assert run(services, token, rid).status == "completed"
    execute(Context(services.db, token, services.settings.public_url), rid)  # a duplicate job
    with services.db.session() as s:
        assert s.query(Credential).filter_by(name="Chữ ký Chánh Văn phòng").count() == 1


def _crl_text(services: Services, tmp_path: Path) -> str:
    with services.db.session() as s:
        issuing = s.query(PkiAuthority).filter_by(slug="issuing").one()
        der = s.query(Crl).filter_by(authority_id=issuing.id).order_by(Crl.number.desc()).first().der  # type: ignore[union-attr]
    path = tmp_path / "ca.crl"
    path.write_bytes(der)
    return openssl("crl", "-inform", "DER", "-in", str(path), "-noout", "-text")


def _serial(services: Services, credential_id: str) -> str:
    with services.db.session() as s:
        cred = s.get(Credential, credential_id)
        assert cred is not None and cred.certificate_der
        text = format(x509.load_der_x509_certificate(cred.certificate_der).serial_number, "X")
        return text.zfill(len(text) + len(text) % 2)  # openssl prints whole bytes


def test_bulk_revoke_with_one_approval_and_per_item_outcome(services: Services, sw: SigningWorld, token: hsm.Hsm,
                                                           tmp_path: Path) -> None:
    world = sw.world
    ids = [sw.leader_credential, sw.seal_credential]
    serials = [_serial(services, i) for i in ids]
    body = lifecycle.RequestBody.model_validate({"action": "revoke", "organisation_id": world.office,
                                                 "credential_ids": ids, "reason": "cessationOfOperation"})
    rid = submit(services, ra(world), body)
    # Between approval and execution the seal is revoked directly: its item fails alone.
    assert decide(services, admin(world), rid) == "approved"
    with services.db.session() as s:
        revoke_credential(s, token, SYSTEM, sw.seal_credential, reason="keyCompromise")
    request = run(services, token, rid)
    assert request.status == "completed"
    assert [i.status for i in request.items] == ["done", "failed"]
    assert "already revoked" in (request.items[1].error or "")
    text = _crl_text(services, tmp_path)
    for serial, reason in zip(serials, ("Cessation Of Operation", "Key Compromise"), strict=True):
        block = text.split(f"Serial Number: {serial}")[1].split("Serial Number:")[0]
        assert reason in block


def test_suspend_blocks_signing_and_resume_restores_it(client: Any, services: Services, sw: SigningWorld,
                                                       token: hsm.Hsm, tmp_path: Path) -> None:
    world = sw.world

    def sign() -> Any:
        return client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": [
            {"name": "hash", "format": "raw", "hash": "77" * 32}]},
            headers={"Authorization": f"Bearer {world.api_key}"})

    waiting = sign()
    assert waiting.status_code == 202
    body = lifecycle.RequestBody.model_validate({"action": "suspend", "organisation_id": world.office,
                                                 "credential_ids": [sw.leader_credential]})
    rid = submit(services, ra(world), body)
    decide(services, admin(world), rid)
    assert run(services, token, rid).status == "completed"
    refused = sign()
    assert refused.status_code == 409 and refused.json["type"].endswith("credential-unusable")
    assert client.get(f"/v1/sign-requests/{waiting.json['id']}",
                      headers={"Authorization": f"Bearer {world.api_key}"}).json["state"] == "FAILED"
    serial = _serial(services, sw.leader_credential)
    assert "Certificate Hold" in _crl_text(services, tmp_path).split(f"Serial Number: {serial}")[1]

    body = lifecycle.RequestBody.model_validate({"action": "resume", "organisation_id": world.office,
                                                 "credential_ids": [sw.leader_credential]})
    rid = submit(services, ra(world), body)
    decide(services, admin(world), rid)
    assert run(services, token, rid).status == "completed"
    assert serial not in _crl_text(services, tmp_path)
    assert sign().status_code == 202


def test_renew_keeps_the_key_and_rekey_replaces_it(services: Services, sw: SigningWorld, token: hsm.Hsm,
                                                   tmp_path: Path) -> None:
    world = sw.world
    old_serial = _serial(services, sw.seal_credential)
    with services.db.session() as s:
        before = s.get(Credential, sw.seal_credential)
        assert before is not None
        old_key, old_label = before.public_key_der, before.hsm_key_label

    rid = submit(services, ra(world), lifecycle.RequestBody.model_validate(
        {"action": "renew", "organisation_id": world.office, "credential_ids": [sw.seal_credential]}))
    decide(services, admin(world), rid)
    assert run(services, token, rid).status == "completed"
    renewed_serial = _serial(services, sw.seal_credential)
    with services.db.session() as s:
        cred = s.get(Credential, sw.seal_credential)
        assert cred is not None and cred.public_key_der == old_key and cred.status == "active"
        assert renewed_serial != old_serial and cred.profile == "organisation-seal"

    rid = submit(services, ra(world), lifecycle.RequestBody.model_validate(
        {"action": "rekey", "organisation_id": world.office, "credential_ids": [sw.seal_credential]}))
    decide(services, admin(world), rid)
    assert run(services, token, rid).status == "completed"
    with services.db.session() as s:
        cred = s.get(Credential, sw.seal_credential)
        assert cred is not None and cred.status == "active"
        assert cred.public_key_der != old_key and cred.hsm_key_label != old_label
        leaf = x509.load_der_x509_certificate(cred.certificate_der or b"")
        superseded = s.query(IssuedCertificate).filter_by(serial=renewed_serial.lower().lstrip("0")).one()
        assert superseded.status == "revoked" and superseded.revocation_reason == "superseded"
    assert leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == cred.public_key_der
    assert old_label not in token.list_keys()  # the old key is gone from the token
    assert "Superseded" in _crl_text(services, tmp_path).split(f"Serial Number: {renewed_serial}")[1]


# -- HTTP ----------------------------------------------------------------------------------------


def login(client: Any, world: World, username: str) -> None:
    client.delete("/v1/session")
    assert client.post("/v1/session", json={"username": username, "password": world.password}).status_code == 200


def test_admin_api(client: Any, services: Services, sw: SigningWorld, token: hsm.Hsm) -> None:
    world = sw.world
    login(client, world, "office-ra")
    payload = issue_body(world).model_dump(mode="json", exclude_none=True)
    created = client.post("/v1/admin/certificate-requests", json=payload)
    assert created.status_code == 201, created.json
    rid = created.json["id"]
    assert created.json["status"] == "pending" and created.json["approvals_required"] == 1
    bad = client.post("/v1/admin/certificate-requests", json=payload | {"subject": {}})
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert client.post(f"/v1/admin/certificate-requests/{rid}/approve").status_code == 403  # own request

    login(client, world, "office-auditor")
    assert client.get(f"/v1/admin/certificate-requests/{rid}").json["status"] == "pending"
    assert client.post(f"/v1/admin/certificate-requests/{rid}/approve").status_code == 403
    assert client.post("/v1/admin/certificate-requests", json=payload).status_code == 403
    assert any(p["action"] == "issue" for p in client.get("/v1/admin/approval-policies").json["items"])
    names = {(p["kind"], p["name"]) for p in client.get("/v1/admin/profiles").json["items"]}
    assert {("certificate", "personal-signing"), ("subject", "leader")} <= names

    login(client, world, "office-admin")
    approved = client.post(f"/v1/admin/certificate-requests/{rid}/approve", json={"comment": "đồng ý"})
    assert approved.status_code == 200 and approved.json["status"] == "approved"
    run(services, token, rid)
    done = client.get(f"/v1/admin/certificate-requests/{rid}").json
    assert done["status"] == "completed" and done["items"][0]["status"] == "done"
    listed = client.get("/v1/admin/certificate-requests?status=completed").json["items"]
    assert [r["id"] for r in listed] == [rid]

    profile = {"title": "Ngắn hạn", "credential_kind": "personal", "key_specs": ["ec-p256"],
               "key_usage": ["digital_signature"], "validity_days": 30}
    assert client.put("/v1/admin/profiles/certificate/short", json=profile).status_code == 200
    assert client.put("/v1/admin/profiles/certificate/bad", json=profile | {"key_usage": ["key_cert_sign"]}
                      ).status_code == 422
    policy = client.put("/v1/admin/approval-policies/revoke/*", json={"approvals_required": 2,
                                                                       "roles": ["admin"], "ttl_hours": 8})
    assert policy.status_code == 200 and policy.json["approvals_required"] == 2
