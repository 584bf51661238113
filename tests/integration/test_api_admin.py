"""Admins manage organisations, people and API clients; every change is audited."""

from __future__ import annotations

from typing import Any

import hsm
from signer import credentials
from signer.models import CredentialKind
from signer.principal import SYSTEM
from signer.services import Services
from tests.conftest import World
from tests.integration.test_api_auth import assert_problem, bearer, last_audit, login


def test_admin_creates_a_child_organisation(client: Any, services: Services, world: World) -> None:
    login(client, world, "office-admin")
    resp = client.post("/v1/admin/organisations",
                       json={"code": "000.01.01.H53", "name": "Phòng Hành chính", "parent_id": world.office})
    assert resp.status_code == 201, resp.json
    assert resp.json["parent_id"] == world.office
    assert resp.json["created_at"].endswith("+00:00")
    assert "Phòng Hành chính" in resp.get_data(as_text=True)  # UTF-8, not \u escapes
    event = last_audit(services)
    assert event.action == "organisation.create" and event.target == f"organisation:{resp.json['id']}"


def test_organisation_code_must_be_well_formed_and_below_the_parent(client: Any, world: World) -> None:
    login(client, world, "root-admin")
    bad = client.post("/v1/admin/organisations",
                      json={"code": "H53-01", "name": "x", "parent_id": world.province})
    assert_problem(bad, 422, "invalid-input")
    wrong_parent = client.post("/v1/admin/organisations",
                               json={"code": "000.00.05.G22", "name": "x", "parent_id": world.province})
    assert_problem(wrong_parent, 422, "invalid-input")
    duplicate = client.post("/v1/admin/organisations",
                            json={"code": "000.00.01.H53", "name": "x", "parent_id": world.province})
    assert_problem(duplicate, 409, "conflict")


def test_admin_creates_a_user_who_can_log_in(client: Any, world: World) -> None:
    login(client, world, "office-admin")
    resp = client.post("/v1/admin/users", json={
        "username": "lanh-dao-2", "full_name": "Lê Văn Cường", "organisation_id": world.office,
        "roles": ["leader", "clerk"], "password": "một-mật-khẩu-dài"})
    assert resp.status_code == 201, resp.json
    assert resp.json["roles"] == ["clerk", "leader"]
    assert "password" not in resp.json and "password_hash" not in resp.json
    again = client.post("/v1/admin/users", json={
        "username": "lanh-dao-2", "full_name": "x", "organisation_id": world.office, "roles": ["leader"]})
    assert_problem(again, 409, "conflict")
    client.delete("/v1/session")
    ok = client.post("/v1/session", json={"username": "lanh-dao-2", "password": "một-mật-khẩu-dài"})
    assert ok.status_code == 200 and ok.json["full_name"] == "Lê Văn Cường"


def test_api_client_key_is_shown_once_and_works(client: Any, services: Services, world: World) -> None:
    login(client, world, "office-admin")
    resp = client.post("/v1/admin/api-clients",
                       json={"name": "Hệ thống QLVB", "organisation_id": world.office, "scopes": ["read"]})
    assert resp.status_code == 201
    key = resp.json["api_key"]
    listed = client.get("/v1/admin/api-clients").json["items"]
    assert all("api_key" not in c for c in listed)
    assert key not in last_audit(services).detail
    client.delete("/v1/session")
    assert client.get("/v1/credentials", headers=bearer(key)).status_code == 200
    bad_scope = client.post("/v1/admin/api-clients",
                            json={"name": "x", "organisation_id": world.office, "scopes": ["root"]})
    assert bad_scope.status_code == 401  # logged out: authentication comes before validation


def test_unknown_scope_is_rejected(client: Any, world: World) -> None:
    login(client, world, "office-admin")
    resp = client.post("/v1/admin/api-clients",
                       json={"name": "x", "organisation_id": world.office, "scopes": ["root"]})
    assert_problem(resp, 422, "invalid-input")


def test_readers_list_users_of_their_organisations_only(client: Any, world: World) -> None:
    login(client, world, "office-auditor")
    names = {u["username"] for u in client.get("/v1/admin/users").json["items"]}
    assert "office-admin" in names and "other-admin" not in names and "root-admin" not in names
    assert_problem(client.get(f"/v1/admin/users?organisation_id={world.other}"), 404, "not-found")


def test_a_person_reads_their_own_record(client: Any, world: World) -> None:
    login(client, world, "office-clerk")
    assert client.get(f"/v1/admin/users/{world.users['office-clerk']}").status_code == 200
    assert_problem(client.get(f"/v1/admin/users/{world.users['office-leader']}"), 403, "forbidden")


def test_auditor_reads_and_verifies_the_audit_log(client: Any, world: World) -> None:
    login(client, world, "office-auditor")
    resp = client.get("/v1/audit?limit=5")
    assert resp.status_code == 200
    items = resp.json["items"]
    assert items and all(e["organisation_id"] == world.office for e in items)
    verify = client.get("/v1/audit/verify").json
    assert verify["ok"] is True and verify["checked"] > 0
    assert_problem(client.get("/v1/audit?limit=abc"), 422, "invalid-input")
    client.delete("/v1/session")
    login(client, world, "office-clerk")
    assert_problem(client.get("/v1/audit"), 403, "forbidden")


def test_credentials_are_visible_to_their_organisation_only(client: Any, services: Services,
                                                          world: World, token: hsm.Hsm) -> None:
    key = token.generate_key(f"api-cred-{services.settings.queue_prefix}", hsm.KeySpec.parse("ec-p256"))
    try:
        with services.db.session() as s:
            cred = credentials.register_key(
                s, SYSTEM, name="Con dấu Văn phòng", kind=CredentialKind.ORGANISATION,
                organisation_id=world.office, owner_user_id=None, key=key, key_spec="ec-p256")
            cred_id = cred.id
        event = last_audit(services)
        assert event.action == "credential.register"
        assert credentials.key_fingerprint(key.public_key_der) in event.detail
        listed = client.get("/v1/credentials", headers=bearer(world.api_key)).json["items"]
        assert [c["id"] for c in listed] == [cred_id]
        assert listed[0]["status"] == "pending" and listed[0]["has_certificate"] is False
        login(client, world, "other-admin")
        assert client.get("/v1/credentials").json["items"] == []
        assert_problem(client.get(f"/v1/credentials/{cred_id}"), 404, "not-found")
    finally:
        token.delete_key(key.label)


def test_personal_credential_needs_a_leader_of_the_organisation(services: Services, world: World,
                                                                token: hsm.Hsm) -> None:
    from signer.errors import InvalidInput

    key = token.generate_key(f"api-pers-{services.settings.queue_prefix}", hsm.KeySpec.parse("ec-p256"))
    try:
        for owner in (world.users["office-clerk"], world.users["other-admin"], None):
            with services.db.session() as s:
                try:
                    credentials.register_key(s, SYSTEM, name="x", kind=CredentialKind.PERSONAL,
                                             organisation_id=world.office, owner_user_id=owner,
                                             key=key, key_spec="ec-p256")
                except InvalidInput:
                    continue
            raise AssertionError(f"owner {owner} was accepted")
    finally:
        token.delete_key(key.label)


def test_audit_paging_cursor_is_bounded_by_the_seq_column(client: Any, world: World) -> None:
    # audit_events.seq is a 32-bit INTEGER: a larger cursor is bad input, not a database error.
    login(client, world, "office-auditor")
    top = client.get(f"/v1/audit?after={2**31 - 1}")
    assert top.status_code == 200, top.get_data(as_text=True)
    assert top.json == {"items": [], "next_after": 2**31 - 1}
    for after in (2**31, 4_000_000_000, 2**62):
        body = assert_problem(client.get(f"/v1/audit?after={after}"), 422, "invalid-input")
        assert body["field"] == "after"
