"""The exchange end to end through the local axis with real Redis workers: A signs (approved +
issued) and sends to B and C; they receive, verify, answer 01, 03, 06; A sees every status per
recipient. A tampered PDF is answered 02 with the reason; a revoke from A is applied at B and
answered."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

import hsm
from exchange import edxml
from signer.interchange import local_axis
from signer.interchange.packets import VN
from signer.services import Services
from signer.workers import run_exchange_worker
from tests.conftest import World
from tests.exchange_support import cycle, register_all, running_axis, send_body, sign_for_sending, sign_in
from tests.signing_support import SigningWorld, add_images, make_signing_world

A, B, C = "000.00.01.H53", "000.00.02.H53", "000.00.00.H53"


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm, client: Any) -> SigningWorld:
    result = make_signing_world(services, world, token, "ec-p256")
    add_images(client, result)
    return result


@pytest.fixture
def axis(services: Services, sw: SigningWorld) -> Any:
    with running_axis(services) as server:
        register_all(services, server.url)
        yield server


def _incoming(client: Any, world: World, username: str, sender: str) -> dict[str, Any]:
    """The newest document from ``sender`` at the user's own organisation."""
    organisation = world.other if username == "other-admin" else world.province
    sign_in(client, username, world.password)
    items = client.get("/v1/exchange/incoming").json["items"]
    mine = [i for i in items if i["sender"] == sender and i["organisation_id"] == organisation]
    assert mine, items
    full = client.get(f"/v1/exchange/incoming/{mine[0]['id']}").json
    client.delete("/v1/session")
    return dict(full)


def _answer(client: Any, world: World, username: str, incoming_id: str, code: str, text: str = "") -> Any:
    sign_in(client, username, world.password)
    resp = client.post(f"/v1/exchange/incoming/{incoming_id}/status", json={"code": code, "description": text})
    client.delete("/v1/session")
    return resp


def _outgoing(client: Any, world: World, outgoing_id: str) -> dict[str, Any]:
    sign_in(client, "office-clerk", world.password)
    view = client.get(f"/v1/exchange/outgoing/{outgoing_id}").json
    client.delete("/v1/session")
    return dict(view)


def _send(client: Any, world: World, body: dict[str, Any]) -> Any:
    sign_in(client, "office-clerk", world.password)
    resp = client.post("/v1/exchange/outgoing", json=body)
    client.delete("/v1/session")
    return resp


def test_send_receive_answer_and_track(client: Any, services: Services, sw: SigningWorld, axis: Any) -> None:
    world = sw.world
    request_id = sign_for_sending(client, services, sw)
    sent = _send(client, world, send_body(request_id, [B, C]))
    assert sent.status_code == 201, sent.json
    assert {r["recipient"]: r["state"] for r in sent.json["recipients"]} == {B: "pending", C: "pending"}

    cycle(services)  # deliver, poll: B and C store, verify and answer 01
    users = {B: "other-admin", C: "root-admin"}
    received = {code: _incoming(client, world, users[code], A) for code in (B, C)}
    for doc in received.values():
        assert doc["verdict"] == "valid", doc["verification"]
        assert doc["state"] == "received" and doc["code"] == "07/QĐ-UBND"
        sigs = doc["verification"]["files"][0]["signatures"]
        assert [s["profile_hint"] for s in sigs] == ["approved", "issued"]
        assert all(s["ok"] for s in sigs)
        assert doc["details"]["subject"] == "Về việc ban hành quy chế làm việc"

    for code, doc in received.items():
        assert _answer(client, world, users[code], doc["id"], "06").status_code == 409  # not accepted yet
        assert _answer(client, world, users[code], doc["id"], "03").status_code == 200
        assert _answer(client, world, users[code], doc["id"], "06").status_code == 200
    cycle(services)  # the answers go out; A polls its statuses
    cycle(services)

    view = _outgoing(client, world, sent.json["id"])
    for recipient in view["recipients"]:
        assert recipient["state"] == "sent" and recipient["axis_doc_id"]
        assert [h["code"] for h in recipient["history"]] == ["01", "03", "06"], recipient
        assert recipient["status"] == "06"

    # A follow-up arrives only once however often the axis is polled.
    cycle(services)
    assert [h["code"] for h in _outgoing(client, world, sent.json["id"])["recipients"][0]["history"]] == [
        "01", "03", "06"]

    month = datetime.now(VN).strftime("%Y-%m")
    sign_in(client, "office-admin", world.password)
    report = client.get(f"/v1/exchange/reports/monthly?organisation_id={world.office}&month={month}").json
    assert report["signed_documents"] == 2  # the leader's and the organisation's signing
    assert report["sent"]["documents"] == 1 and report["sent"]["deliveries"] == 2
    assert report["sent"]["statuses"] == {"06": 2} and report["sent"]["signed_share"] == 1.0
    assert report["sent"]["by_recipient_class"]["H"]["documents"] == 2
    client.delete("/v1/session")
    sign_in(client, "other-admin", world.password)
    report = client.get(f"/v1/exchange/reports/monthly?month={month}").json
    assert report["received"]["documents"] == 1 and report["received"]["verdicts"] == {"valid": 1}
    assert report["received"]["statuses_sent"] == {"01": 1, "03": 1, "06": 1}
    assert client.get("/v1/exchange/reports/monthly?month=2026-13").status_code == 422
    client.delete("/v1/session")


def _tamper(services: Services) -> None:
    """Change one byte inside the signed range of the PDF of every packet waiting in the local axis."""
    path = local_axis.folder(services.settings) / "axis.db"
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT doc_id, edxml FROM packets").fetchall()
        for doc_id, data in rows:
            packet = edxml.parse(bytes(data))
            if not isinstance(packet, edxml.DocumentPacket) or not packet.attachments:
                continue
            pdf = bytearray(packet.attachments[0].data)
            assert pdf[:7] == b"%PDF-1."
            pdf[7] = ord("4") if pdf[7] != ord("4") else ord("5")  # the header: first byte range, still readable
            changed = replace(packet, attachments=(replace(packet.attachments[0], data=bytes(pdf)),))
            conn.execute("UPDATE packets SET edxml = ? WHERE doc_id = ?", (edxml.build(changed), doc_id))


def test_tampered_pdf_is_rejected_with_02_and_a_revoke_is_applied(client: Any, services: Services,
                                                                   sw: SigningWorld, axis: Any) -> None:
    world = sw.world
    request_id = sign_for_sending(client, services, sw)
    good = _send(client, world, send_body(request_id, [B], number="08"))
    assert good.status_code == 201, good.json
    cycle(services)
    bad = _send(client, world, send_body(request_id, [B], number="09"))
    assert bad.status_code == 201, bad.json
    run_exchange_worker(services, burst=True)  # delivered to the axis, not yet fetched
    _tamper(services)
    cycle(services)
    cycle(services)
    rejected = _outgoing(client, world, bad.json["id"])["recipients"][0]
    assert rejected["status"] == "02", rejected
    assert "integrity" in rejected["history"][-1]["description"]

    sign_in(client, "office-clerk", world.password)
    revoke = client.post(f"/v1/exchange/outgoing/{good.json['id']}/revoke", json={"reason": "Ban hành nhầm"})
    client.delete("/v1/session")
    assert revoke.status_code == 201, revoke.json
    cycle(services)
    sign_in(client, "other-admin", world.password)
    items = {i["code"]: i for i in client.get("/v1/exchange/incoming").json["items"] if i["sender"] == A}
    client.delete("/v1/session")
    assert items["09/QĐ-UBND"]["state"] == "rejected"
    target = items["08/QĐ-UBND"]
    assert target["pending_action"] == "revoke"
    assert _answer(client, world, "other-admin", target["id"], "03", "Đồng ý thu hồi").status_code == 200
    cycle(services)
    cycle(services)
    view = _outgoing(client, world, good.json["id"])
    follow = view["follow_ups"][0]
    assert follow["business_type"] == 1 and follow["recipients"][0]["status"] == "03"
    sign_in(client, "other-admin", world.password)
    assert client.get(f"/v1/exchange/incoming/{target['id']}").json["state"] == "revoked"
    client.delete("/v1/session")


def test_secret_documents_are_refused(client: Any, services: Services, sw: SigningWorld, axis: Any) -> None:
    resp = _send(client, sw.world, send_body("x", [B], secret=True))
    assert resp.status_code == 422 and resp.json["type"].endswith("secret-document"), resp.json


def test_take_back_is_answered_15_and_the_document_withdrawn(client: Any, services: Services, sw: SigningWorld,
                                                              axis: Any) -> None:
    world = sw.world
    sent = _send(client, world, send_body(sign_for_sending(client, services, sw), [B], number="10"))
    assert sent.status_code == 201, sent.json
    cycle(services)
    sign_in(client, "office-clerk", world.password)
    asked = client.post(f"/v1/exchange/outgoing/{sent.json['id']}/take-back", json={"reason": "Gửi nhầm nơi nhận"})
    client.delete("/v1/session")
    assert asked.status_code == 202 and asked.json["status_requests"][0]["code"] == "13", asked.json
    cycle(services)
    doc = _incoming(client, world, "other-admin", A)
    assert doc["pending_action"] == "take-back" and doc["pending"] == {"reason": "Gửi nhầm nơi nhận"}
    assert _answer(client, world, "other-admin", doc["id"], "03").status_code == 422  # a take-back wants 15/16
    assert _answer(client, world, "other-admin", doc["id"], "15").status_code == 200
    cycle(services)
    cycle(services)
    assert _incoming(client, world, "other-admin", A)["state"] == "withdrawn"
    recipient = _outgoing(client, world, sent.json["id"])["recipients"][0]
    assert [h["code"] for h in recipient["history"]] == ["01", "15"] and recipient["status"] == "15"
