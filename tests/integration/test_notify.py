"""Holder notifications: the live channel of the holder (or the organisation's clerks), a signed
gateway webhook, and a failing gateway that changes nothing about the request."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

import hsm
from signer import notify
from signer.services import Services
from signer.workers import run_exchange_worker
from tests.conftest import World
from tests.signing_support import SigningWorld, make_signing_world
from tests.support import free_port


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


class _Gateway(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    _Gateway.received, _Gateway.status = [], 200
    server = http.server.HTTPServer(("127.0.0.1", free_port()), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/sms"
    server.shutdown()
    server.server_close()


def _create(client: Any, sw: SigningWorld, credential: str) -> dict[str, Any]:
    resp = client.post("/v1/sign-requests", json={"credential_id": credential, "documents": [
        {"name": "Quyết định", "format": "raw", "hash": "ef" * 32}]},
        headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 202
    return dict(resp.json)


def _messages(pubsub: Any, expected: int) -> list[dict[str, Any]]:
    # get_message answers None for the (ignored) subscribe confirmations too: wait for a count.
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < expected and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is not None:
            found.append(json.loads(message["data"]))
    return found


def test_holders_hear_of_new_requests_on_their_live_channel(client: Any, services: Services,
                                                            sw: SigningWorld) -> None:
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(notify.holder_channel(services, sw.leader.user_id),
                     notify.holder_channel(services, sw.clerk.user_id))
    try:
        personal = _create(client, sw, sw.leader_credential)
        sealed = _create(client, sw, sw.seal_credential)
        run_exchange_worker(services, burst=True)
        heard = _messages(pubsub, 2)
    finally:
        pubsub.close()
    assert {(m["username"], m["request_id"], m["event"]) for m in heard} == {
        ("office-leader", personal["id"], "sign_request.pending"),
        ("office-clerk", sealed["id"], "sign_request.pending")}
    assert all(personal["verification_code"] not in json.dumps(m) for m in heard)


def test_gateway_notifications_are_signed_and_a_failing_gateway_changes_nothing(
        client: Any, services: Services, sw: SigningWorld, gateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import SecretStr

    monkeypatch.setattr(services, "settings", services.settings.model_copy(update={
        "notify_webhook_url": gateway, "notify_webhook_secret": SecretStr("cổng-sms-bí-mật")}))
    req = _create(client, sw, sw.leader_credential)
    assert notify.notify_request(services, req["id"]) == 0
    head, body = _Gateway.received[-1]
    expected = hmac.new("cổng-sms-bí-mật".encode(), f"{head['X-Signer-Timestamp']}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert head["X-Signer-Signature"] == f"v1={expected}"
    assert json.loads(body)["event"] == "sign_request.pending"

    _Gateway.status = 503
    assert notify.notify_request(services, req["id"]) == 1  # counted, not raised
    view = client.get(f"/v1/sign-requests/{req['id']}", headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert view.json["state"] == "AWAITING_APPROVAL"
