"""Authentication and authorisation: bad input gets problem+json and writes nothing but the audit
row of a denied action."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

import hsm
import signer.signing.models  # noqa: F401 - registers its tables in Base.metadata
from signer import credentials
from signer.models import ApiClient, AuditEvent, Base, CredentialKind, User, utcnow
from signer.principal import SYSTEM
from signer.services import Services
from tests.conftest import World

PROBLEM = "application/problem+json"
# Denied actions write exactly these (one row each); everything else must stay byte for byte.
AUDIT_TABLES = frozenset({"audit_events", "audit_head"})


def counts(services: Services) -> dict[str, Any]:
    """A fingerprint of the full contents of every table but the audit log (so an UPDATE shows,
    not only an INSERT), and the number of audit rows."""
    state: dict[str, Any] = {}
    with services.db.session() as s:
        for table in Base.metadata.sorted_tables:
            if table.name in AUDIT_TABLES:
                continue
            rows = s.execute(select(table).order_by(*table.primary_key.columns)).all()
            digest = hashlib.sha256(repr([tuple(r) for r in rows]).encode()).hexdigest()
            state[table.name] = (len(rows), digest)
        state["audit_events"] = s.scalar(select(func.count()).select_from(AuditEvent)) or 0
    return state


def test_fingerprint_covers_every_table_and_sees_updates(services: Services, world: World) -> None:
    before = counts(services)
    assert {"organisations", "users", "user_roles", "api_clients", "credentials",
            "sign_requests"} <= set(before)
    with services.db.session() as s:
        user = s.get(User, world.users["office-clerk"])
        assert user is not None
        user.full_name += "."  # an update: the row count stays the same
    after = counts(services)
    assert after["users"][0] == before["users"][0] and after["users"] != before["users"]
    assert {k: v for k, v in after.items() if k != "users"} == {
        k: v for k, v in before.items() if k != "users"}


def last_audit(services: Services) -> AuditEvent:
    with services.db.session() as s:
        event = s.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1))
        assert event is not None
        return event


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def login(client: Any, world: World, username: str) -> None:
    resp = client.post("/v1/session", json={"username": username, "password": world.password})
    assert resp.status_code == 200, resp.json


def assert_problem(resp: Any, status: int, slug: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    body: dict[str, Any] = resp.get_json(force=True)
    assert body["type"] == f"urn:signer:problem:{slug}"
    assert body["status"] == status
    assert "Traceback" not in resp.get_data(as_text=True)
    return body


NEW_ORG = {"code": "000.00.09.H53", "name": "Sở mới", "parent_id": None}


@pytest.mark.parametrize("header", [
    "Bearer sk_0000000000000000_wrong",
    "Bearer not-even-shaped-like-a-key",
    "Basic YWRtaW46YWRtaW4=",
    "Bearer ",
])
def test_wrong_api_key_is_401_and_only_audited(client: Any, services: Services, world: World,
                                               header: str) -> None:
    before = counts(services)
    resp = client.get("/v1/credentials", headers={"Authorization": header})
    assert_problem(resp, 401, "unauthenticated")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    after = counts(services)
    assert after == before | {"audit_events": before["audit_events"] + 1}
    event = last_audit(services)
    assert (event.outcome, event.actor, event.target) == ("denied", "anonymous", "/v1/credentials")


def test_no_credentials_is_401(client: Any, world: World) -> None:
    assert_problem(client.get("/v1/admin/organisations"), 401, "unauthenticated")


def test_valid_api_key_identifies_the_client(client: Any, services: Services, world: World) -> None:
    resp = client.get("/v1/me", headers=bearer(world.api_key))
    assert resp.status_code == 200
    assert resp.json["kind"] == "api_client"
    assert resp.json["organisation_id"] == world.office
    assert resp.json["scopes"] == ["read", "sign", "verify"]
    assert _last_used(services, world.api_key) is not None


@pytest.mark.parametrize("username", ["office-clerk", "office-leader", "office-auditor", "office-ra"])
def test_wrong_role_is_403_and_writes_nothing_but_audit(client: Any, services: Services, world: World,
                                                         username: str) -> None:
    login(client, world, username)
    before = counts(services)
    body = dict(NEW_ORG, parent_id=world.office)
    assert_problem(client.post("/v1/admin/organisations", json=body), 403, "forbidden")
    after = counts(services)
    assert after == before | {"audit_events": before["audit_events"] + 1}
    event = last_audit(services)
    assert event.outcome == "denied" and event.actor == f"user:{world.users[username]}"


def test_api_client_cannot_use_admin_endpoints(client: Any, services: Services, world: World) -> None:
    body = dict(NEW_ORG, parent_id=world.office)
    assert_problem(client.post("/v1/admin/organisations", json=body, headers=bearer(world.api_key)),
                   403, "forbidden")


def test_missing_scope_is_403_and_writes_nothing_but_audit(client: Any, services: Services,
                                                           world: World) -> None:
    before = counts(services)
    # This client of the office only has the "verify" scope; listing credentials needs "read".
    assert_problem(client.get("/v1/credentials", headers=bearer(world.verify_api_key)), 403, "forbidden")
    assert counts(services) == before | {"audit_events": before["audit_events"] + 1}
    event = last_audit(services)
    assert event.outcome == "denied" and event.actor.startswith("api_client:")


def test_api_client_of_another_organisation_gets_404(client: Any, services: Services, world: World,
                                                    token: hsm.Hsm) -> None:
    key = token.generate_key(f"auth-404-{services.settings.queue_prefix}", hsm.KeySpec.parse("ec-p256"))
    try:
        with services.db.session() as s:
            cred_id = credentials.register_key(
                s, SYSTEM, name="Con dấu Văn phòng", kind=CredentialKind.ORGANISATION,
                organisation_id=world.office, owner_user_id=None, key=key, key_spec="ec-p256").id
        # Same scope ("read") as the office's own client, which sees it.
        own = client.get(f"/v1/credentials/{cred_id}", headers=bearer(world.api_key))
        assert own.status_code == 200
        before = counts(services)
        assert_problem(client.get(f"/v1/credentials/{cred_id}", headers=bearer(world.other_api_key)),
                       404, "not-found")
        assert counts(services) == before | {"audit_events": before["audit_events"] + 1}
        event = last_audit(services)
        assert event.outcome == "denied" and event.organisation_id == world.other
        listed = client.get("/v1/credentials", headers=bearer(world.other_api_key))
        assert listed.status_code == 200 and listed.json["items"] == []
    finally:
        token.delete_key(key.label)


def _last_used(services: Services, key: str) -> Any:
    key_id = key.split("_")[1]
    with services.db.session() as s:
        return s.scalar(select(ApiClient.last_used_at).where(ApiClient.key_id == key_id))


def test_api_client_use_is_recorded_after_success_only_and_once_a_minute(
        client: Any, services: Services, world: World) -> None:
    assert_problem(client.get("/v1/credentials", headers=bearer(world.verify_api_key)), 403, "forbidden")
    assert _last_used(services, world.verify_api_key) is None  # denied: nothing written
    assert client.get("/v1/me", headers=bearer(world.verify_api_key)).status_code == 200
    first = _last_used(services, world.verify_api_key)
    assert first is not None
    assert client.get("/v1/me", headers=bearer(world.verify_api_key)).status_code == 200
    assert _last_used(services, world.verify_api_key) == first  # within the minute: no write
    with services.db.session() as s:
        s.execute(update(ApiClient)
                  .where(ApiClient.key_id == world.verify_api_key.split("_")[1])
                  .values(last_used_at=utcnow() - timedelta(minutes=5)))
    assert client.get("/v1/me", headers=bearer(world.verify_api_key)).status_code == 200
    assert _last_used(services, world.verify_api_key) != first


def test_other_organisation_is_404(client: Any, services: Services, world: World) -> None:
    login(client, world, "office-admin")
    before = counts(services)
    assert_problem(client.get(f"/v1/admin/organisations/{world.other}"), 404, "not-found")
    assert_problem(client.get(f"/v1/admin/users/{world.users['other-admin']}"), 404, "not-found")
    body = dict(NEW_ORG, parent_id=world.other, code="000.01.02.H53")
    assert_problem(client.post("/v1/admin/organisations", json=body), 404, "not-found")
    after = counts(services)
    assert after == before | {"audit_events": before["audit_events"] + 3}


def test_parent_admin_sees_child_organisations(client: Any, world: World) -> None:
    login(client, world, "root-admin")
    assert client.get(f"/v1/admin/organisations/{world.other}").status_code == 200
    codes = [o["code"] for o in client.get("/v1/admin/organisations").json["items"]]
    assert codes == ["000.00.00.H53", "000.00.01.H53", "000.00.02.H53"]


@pytest.mark.parametrize(("payload", "content_type", "status", "slug"), [
    (b"{not json", "application/json", 422, "invalid-input"),
    (b'{"code": 5}', "application/json", 422, "invalid-input"),
    (b"[]", "application/json", 422, "invalid-input"),
    (b"\xff\xfe", "application/json", 422, "invalid-input"),
    (b"code=1", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
])
def test_malformed_bodies_are_rejected_and_write_nothing(client: Any, services: Services, world: World,
                                                         payload: bytes, content_type: str, status: int,
                                                         slug: str) -> None:
    login(client, world, "office-admin")
    before = counts(services)
    resp = client.post("/v1/admin/organisations", data=payload, content_type=content_type)
    assert_problem(resp, status, slug)
    assert counts(services) == before


def test_validation_errors_name_the_fields(client: Any, world: World) -> None:
    login(client, world, "office-admin")
    resp = client.post("/v1/admin/users", json={"username": "X Y", "roles": ["king"]})
    body = assert_problem(resp, 422, "invalid-input")
    fields = {e["field"] for e in body["errors"]}
    assert {"username", "full_name", "organisation_id", "roles.0"} <= fields


def test_body_over_the_limit_is_413(client: Any, world: World) -> None:
    login(client, world, "office-admin")
    resp = client.post("/v1/admin/organisations", data=b"{" + b" " * (2 << 20) + b"}",
                       content_type="application/json")
    assert_problem(resp, 413, "payload-too-large")


def test_unknown_endpoint_is_problem_json(client: Any) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")


# -- sessions -------------------------------------------------------------------------------------


def test_login_wrong_password_is_401_and_audited_without_the_password(client: Any, services: Services,
                                                                       world: World) -> None:
    resp = client.post("/v1/session", json={"username": "office-admin", "password": "hunter2-wrong"})
    assert_problem(resp, 401, "unauthenticated")
    event = last_audit(services)
    assert event.outcome == "denied"
    assert "hunter2" not in event.detail and "hunter2" not in event.target


def test_login_logout_and_session_invalidation(client: Any, services: Services, world: World) -> None:
    login(client, world, "office-admin")
    assert client.get("/v1/me").json["roles"] == ["admin"]
    with services.db.session() as s:
        user = s.get(User, world.users["office-admin"])
        assert user is not None
        user.session_version += 1  # e.g. a password change
    assert_problem(client.get("/v1/me"), 401, "unauthenticated")
    login(client, world, "office-admin")
    assert client.delete("/v1/session").status_code == 204
    assert_problem(client.get("/v1/me"), 401, "unauthenticated")


def test_logout_revokes_the_cookie_and_the_users_other_sessions(app: Any, client: Any,
                                                                world: World) -> None:
    login(client, world, "office-admin")
    other_device = app.test_client()
    login(other_device, world, "office-admin")
    cookie = client.get_cookie("signer_session")
    assert cookie is not None
    assert client.delete("/v1/session").status_code == 204
    assert client.get_cookie("signer_session") is None
    # A copy of the old cookie (stolen, or kept by a proxy) is worthless after logout.
    client.set_cookie("signer_session", cookie.value)
    assert_problem(client.get("/v1/me"), 401, "unauthenticated")
    # Documented: logging out signs that user out everywhere.
    assert_problem(other_device.get("/v1/me"), 401, "unauthenticated")
    login(client, world, "office-admin")
    assert client.get("/v1/me").status_code == 200


def test_inactive_user_cannot_log_in(client: Any, services: Services, world: World) -> None:
    with services.db.session() as s:
        user = s.get(User, world.users["office-clerk"])
        assert user is not None
        user.active = False
    resp = client.post("/v1/session", json={"username": "office-clerk", "password": world.password})
    assert_problem(resp, 401, "unauthenticated")


def test_password_is_stored_with_argon2id(services: Services, world: World) -> None:
    with services.db.session() as s:
        user = s.get(User, world.users["office-admin"])
        assert user is not None and user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$")
        assert world.password not in user.password_hash


def test_api_key_is_stored_only_as_a_hash(services: Services, world: World) -> None:
    secret = world.api_key.split("_", 2)[2]
    with services.db.session() as s:
        stored = [(c.key_id, c.key_hash) for c in s.scalars(select(ApiClient))]
    assert all(secret not in key_hash and secret != key_id for key_id, key_hash in stored)
