"""A credential that is revoked, suspended, expired or not yet certified signs nothing: new sign
requests are refused at once with a problem naming the state (Vietnamese first), and a request
made before the change ends FAILED (CREDENTIAL_UNUSABLE) whether the holder approves it or the
hsm worker picks it up. The certificate registry for dashboards lists inventory certificates too."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from sqlalchemy import select

import hsm
from signer import credentials
from signer.models import AuditEvent, Credential, CredentialKind, CredentialStatus, Role
from signer.pki import expiry
from signer.pki.revocation import revoke_credential
from signer.principal import SYSTEM, Principal
from signer.services import Services
from signer.signing.material import unusable
from signer.signing.models import Approval
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.integration.test_expiry import add_inventory, current, not_after
from tests.signing_support import SigningWorld, approve, make_signing_world

PROBLEM = "urn:signer:problem:credential-unusable"


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def create(client: Any, world: World, credential_id: str) -> Any:
    return client.post("/v1/sign-requests", headers={"Authorization": f"Bearer {world.api_key}"}, json={
        "credential_id": credential_id, "documents": [{"name": "Tờ trình", "format": "raw", "hash": "3c" * 32}]})


def view(client: Any, world: World, request_id: str) -> dict[str, Any]:
    resp = client.get(f"/v1/sign-requests/{request_id}", headers={"Authorization": f"Bearer {world.api_key}"})
    assert resp.status_code == 200
    return dict(resp.json)


def set_status(services: Services, credential_id: str, status: CredentialStatus) -> None:
    """Change the status alone, as a suspension would before it sweeps the credential's requests."""
    with services.db.session() as s:
        cred = s.get(Credential, credential_id)
        assert cred is not None
        cred.status = status.value


def refused(client: Any, world: World, credential_id: str, vi: str, en: str, state: str) -> None:
    resp = create(client, world, credential_id)
    assert resp.status_code == 409, resp.json
    assert resp.mimetype == "application/problem+json" and resp.json["type"] == PROBLEM
    detail: str = resp.json["detail"]
    assert detail.startswith(vi) and en in detail and detail.index(vi) < detail.index(" / "), detail
    assert resp.json["credential_status"] == state


def test_new_requests_are_refused_naming_the_state(client: Any, services: Services, sw: SigningWorld,
                                                   token: hsm.Hsm) -> None:
    world = sw.world
    assert create(client, world, sw.leader_credential).status_code == 202

    key = token.generate_key(f"t-{secrets.token_hex(6)}", hsm.KeySpec.parse("ec-p256"))
    with services.db.session() as s:
        pending = credentials.register_key(s, SYSTEM, name="con dấu mới", kind=CredentialKind.ORGANISATION,
                                           organisation_id=world.office, owner_user_id=None, key=key,
                                           key_spec="ec-p256").id
    refused(client, world, pending, "Chứng thư số chưa được cấp", "has no certificate yet", "pending")

    set_status(services, sw.seal_credential, CredentialStatus.SUSPENDED)
    refused(client, world, sw.seal_credential, "Chứng thư số đang bị tạm dừng", "is suspended", "suspended")
    # The expiry run marks the suspended seal expired once its certificate ends.
    ended = not_after(current(services, sw.seal_credential)) + dt.timedelta(seconds=1)
    with services.db.session() as s:
        assert sw.seal_credential in expiry.expire_credentials(s, ended)
    refused(client, world, sw.seal_credential, "Chứng thư số đã hết hạn", "has expired", "expired")

    set_status(services, sw.leader_credential, CredentialStatus.ACTIVE)  # the run above may have expired it
    after_end = not_after(current(services, sw.leader_credential)) + dt.timedelta(seconds=1)
    with services.db.session() as s:
        cred = s.get(Credential, sw.leader_credential)
        assert cred is not None
        # Past notAfter counts as expired before the scheduler marks it.
        late = unusable(cred, after_end)
        assert late is not None and late.extra["credential_status"] == "expired"
        assert unusable(cred) is None
    with services.db.session() as s:
        revoke_credential(s, token, Principal(kind="user", id=world.users["office-ra"], organisation_id=world.office,
                                              roles=frozenset({Role.RA_OFFICER})),
                          sw.leader_credential, reason="keyCompromise")
    refused(client, world, sw.leader_credential, "Chứng thư số đã bị thu hồi", "is revoked", "revoked")


def test_a_request_whose_credential_was_suspended_fails_when_approved(client: Any, services: Services,
                                                                     sw: SigningWorld) -> None:
    world = sw.world
    req = create(client, world, sw.leader_credential).json
    set_status(services, sw.leader_credential, CredentialStatus.SUSPENDED)
    resp = approve(client, world, sw.leader, req)
    assert resp.status_code == 202
    assert (resp.json["state"], resp.json["result"], resp.json["reason"]) == ("FAILED", "FAILED",
                                                                              "CREDENTIAL_UNUSABLE")
    assert "tạm dừng" in view(client, world, req["id"])["detail"]
    with services.db.session() as s:
        assert s.scalar(select(Approval.id).where(Approval.request_id == req["id"])) is None  # nothing to sign
        event = s.scalar(select(AuditEvent).where(AuditEvent.target == f"sign_request:{req['id']}",
                                                  AuditEvent.action == "sign_request.approve"))
        assert event is not None and event.outcome == "denied" and "CREDENTIAL_UNUSABLE" in event.detail


def test_the_worker_refuses_a_credential_suspended_after_approval(client: Any, services: Services,
                                                                  sw: SigningWorld) -> None:
    world = sw.world
    req = create(client, world, sw.seal_credential).json
    assert approve(client, world, sw.clerk, req).status_code == 202  # SIGNING, queued for the hsm worker
    set_status(services, sw.seal_credential, CredentialStatus.SUSPENDED)
    run_hsm_worker(services, burst=True)
    final = view(client, world, req["id"])
    assert (final["state"], final["result"], final["reason"]) == ("FAILED", "FAILED", "CREDENTIAL_UNUSABLE")
    assert all(d["signature"] is None and d["signed_url"] is None for d in final["documents"])


def test_certificate_listing_for_dashboards(client: Any, services: Services, sw: SigningWorld,
                                            token: hsm.Hsm) -> None:
    world = sw.world
    now = dt.datetime.now(dt.UTC)
    soon = add_inventory(services, token, world.office, "Lê Văn Cường", validity_days=20)
    gone = add_inventory(services, token, world.office, "Phạm Thị Dung", validity_days=5,
                         not_before=now - dt.timedelta(days=10))
    elsewhere = add_inventory(services, token, world.other, "Hoàng Văn Em", validity_days=20)
    with services.db.session() as s:
        revoke_credential(s, token, SYSTEM, sw.seal_credential, reason="cessationOfOperation")
    expiry.run(services)
    leader, seal = current(services, sw.leader_credential).id, current(services, sw.seal_credential).id

    def listing(username: str, query: str = "") -> Any:
        client.post("/v1/session", json={"username": username, "password": world.password})
        try:
            return client.get(f"/v1/certificates{query}")
        finally:
            client.delete("/v1/session")

    for reader in ("office-admin", "office-ra", "office-auditor"):
        items = listing(reader).json["items"]
        assert {c["id"] for c in items} == {leader, seal, soon, gone}, reader
    items = {c["id"]: c for c in listing("office-admin").json["items"]}
    assert (items[soon]["source"], items[soon]["holder"], items[soon]["credential_id"],
            items[soon]["credential_status"], items[soon]["organisation_id"], items[soon]["notified_days"]) == (
        "inventory", "Lê Văn Cường", None, None, world.office, 30)
    assert (items[leader]["source"], items[leader]["credential_status"], items[leader]["notified_days"]) == (
        "builtin", "active", None)
    assert (items[seal]["status"], items[seal]["credential_status"]) == ("revoked", "revoked")

    def ids(query: str) -> list[str]:
        resp = listing("office-ra", query)
        assert resp.status_code == 200, resp.json
        return [c["id"] for c in resp.json["items"]]

    assert ids("?expiring_within=30d") == [soon]
    assert ids("?status=expired") == [gone] and items[gone]["status"] == "expired"
    assert ids("?status=revoked") == [seal]
    assert ids("?status=good") == [soon, leader]  # soonest expiry first
    assert ids("?status=good&expiring_within=30d") == [soon]
    assert [c["id"] for c in listing("other-admin").json["items"]] == [elsewhere]
    assert {c["id"] for c in listing("root-admin").json["items"]} == {leader, seal, soon, gone, elsewhere}
    assert listing("office-clerk").status_code == 403
    bad = listing("office-admin", "?status=suspended")
    assert bad.status_code == 422 and bad.json["field"] == "status"
