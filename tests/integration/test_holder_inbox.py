"""The holder's inbox: pending requests only for whoever may approve them, the verification code
hidden among three choices (never given to the phone), and the history of decisions."""

from __future__ import annotations

from typing import Any

import pytest

import hsm
from signer.services import Services
from tests.conftest import World
from tests.signing_support import SigningWorld, approve, make_signing_world


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def _create(client: Any, sw: SigningWorld, credential: str, name: str) -> dict[str, Any]:
    doc = {"name": name, "format": "raw", "hash": "cd" * 32}
    resp = client.post("/v1/sign-requests", json={"credential_id": credential, "documents": [doc]},
                       headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 202
    return dict(resp.json)


def _as(client: Any, world: World, username: str, path: str) -> Any:
    client.post("/v1/session", json={"username": username, "password": world.password})
    try:
        return client.get(path)
    finally:
        client.delete("/v1/session")


def test_pending_requests_reach_only_their_holders(client: Any, sw: SigningWorld) -> None:
    world = sw.world
    first = _create(client, sw, sw.leader_credential, "Tờ trình 1")
    second = _create(client, sw, sw.leader_credential, "Tờ trình 2")
    sealed = _create(client, sw, sw.seal_credential, "Công văn đóng dấu")
    leader = _as(client, world, "office-leader", "/v1/sign-requests/mine/pending").json["items"]
    assert [r["id"] for r in leader] == [second["id"], first["id"]]  # newest first
    assert leader[0]["verification_code"] is None and len(leader[0]["code_choices"]) == 3
    assert second["verification_code"] in leader[0]["code_choices"]
    assert leader[0]["documents"][0]["name"] == "Tờ trình 2"
    clerk = _as(client, world, "office-clerk", "/v1/sign-requests/mine/pending").json["items"]
    assert [r["id"] for r in clerk] == [sealed["id"]]  # the organisation's seal, not the leader's key
    assert _as(client, world, "office-admin", "/v1/sign-requests/mine/pending").json["items"] == []
    # The code is hidden from people on the request itself too.
    one = _as(client, world, "office-leader", f"/v1/sign-requests/{first['id']}").json
    assert one["verification_code"] is None and first["verification_code"] in one["code_choices"]
    dms = client.get(f"/v1/sign-requests/{first['id']}", headers={"Authorization": f"Bearer {world.api_key}"})
    assert dms.json["verification_code"] == first["verification_code"] and dms.json["code_choices"] is None
    api = client.get("/v1/sign-requests/mine/pending", headers={"Authorization": f"Bearer {world.api_key}"})
    assert api.status_code == 403


def test_decisions_are_listed_newest_first(client: Any, services: Services, sw: SigningWorld) -> None:
    world = sw.world
    approved = _create(client, sw, sw.leader_credential, "duyệt")
    refused = _create(client, sw, sw.leader_credential, "từ chối")
    untouched = _create(client, sw, sw.leader_credential, "chưa xem")
    assert approve(client, world, sw.leader, approved).status_code == 202
    client.post("/v1/session", json={"username": "office-leader", "password": world.password})
    assert client.post(f"/v1/sign-requests/{refused['id']}/refusal", json={"reason": "Sai số hiệu"}).status_code == 200
    decisions = client.get("/v1/sign-requests/mine/decisions").json["items"]
    pending = client.get("/v1/sign-requests/mine/pending").json["items"]
    assert client.get("/v1/sign-requests/mine/decisions?limit=0").status_code == 422
    client.delete("/v1/session")
    assert [(d["id"], d["state"]) for d in decisions] == [(refused["id"], "REJECTED"), (approved["id"], "SIGNING")]
    assert [p["id"] for p in pending] == [untouched["id"]]
