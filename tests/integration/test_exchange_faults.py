"""Faults: the axis stops in the middle of 50 sends and comes back; Redis is down while documents
are sent and comes back. The database outbox is the truth: every document arrives, once."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

import hsm
from signer.app import create_app
from signer.interchange import delivery
from signer.interchange.models import Incoming, OutboxItem, OutboxState
from signer.models import utcnow
from signer.services import Services
from signer.settings import Settings
from signer.supervisor import wait_for_redis
from signer.workers import run_exchange_worker
from tests.conftest import World
from tests.exchange_support import cycle, register_all, running_axis, send_body, sign_for_sending, sign_in
from tests.signing_support import SigningWorld, add_images, make_signing_world
from tests.support import free_port

A, B = "000.00.01.H53", "000.00.02.H53"
COUNT = 50


class RestartableRedis:
    """A private redis-server that can be stopped and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_redis(self.url)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis_box(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def fast(settings: Settings, redis_box: RestartableRedis) -> Iterator[Services]:
    """The services with quick retries (no waiting between attempts) on a Redis of their own."""
    tuned = settings.model_copy(update={"axis_attempts": 1, "axis_backoff_s": 0.0, "exchange_backoff_s": 0.0,
                                        "exchange_max_attempts": 50, "axis_timeout_s": 5.0,
                                        "redis_url": redis_box.url})
    svc = Services.create(tuned)
    yield svc
    svc.close()


@pytest.fixture
def fast_client(fast: Services) -> Any:
    app = create_app(fast.settings, fast)
    app.testing = True
    return app.test_client()


@pytest.fixture
def sw(fast: Services, world: World, token: hsm.Hsm, fast_client: Any) -> SigningWorld:
    result = make_signing_world(fast, world, token, "ec-p256")
    add_images(fast_client, result)
    return result


def _send_many(client: Any, world: World, request_id: str) -> None:
    sign_in(client, "office-clerk", world.password)
    for n in range(COUNT):
        resp = client.post("/v1/exchange/outgoing", json=send_body(request_id, [B], number=f"{100 + n}"))
        assert resp.status_code == 201, resp.json
    client.delete("/v1/session")


def _states(services: Services) -> dict[str, int]:
    with services.db.session(readonly=True) as db:
        rows = db.execute(select(OutboxItem.state, func.count()).where(OutboxItem.kind == "edoc")
                          .group_by(OutboxItem.state)).all()
    return dict(rows)


def _backoff_elapses(services: Services) -> None:
    with services.db.session() as db:
        db.execute(update(OutboxItem).where(OutboxItem.state == OutboxState.PENDING).values(next_attempt_at=utcnow()))


def _received(services: Services) -> int:
    with services.db.session(readonly=True) as db:
        return int(db.scalar(select(func.count()).select_from(Incoming).where(Incoming.sender == A)) or 0)


def test_axis_stops_mid_send_and_every_document_arrives_once(fast: Services, fast_client: Any,
                                                             sw: SigningWorld) -> None:
    port = free_port()
    with running_axis(fast, port) as server:
        register_all(fast, server.url)
        request_id = sign_for_sending(fast_client, fast, sw)
        _send_many(fast_client, sw.world, request_id)

        def stop_after_some() -> None:
            while _states(fast).get(OutboxState.SENT, 0) < 10:
                time.sleep(0.01)
            server.shutdown()

        stopper = threading.Thread(target=stop_after_some)
        stopper.start()
        run_exchange_worker(fast, burst=True)  # the rest fail: connection refused
        stopper.join()
    states = _states(fast)
    assert 10 <= states.get(OutboxState.SENT, 0) < COUNT and states.get(OutboxState.PENDING, 0) > 0, states
    assert not states.get(OutboxState.DEAD), states

    _backoff_elapses(fast)
    with running_axis(fast, port):  # the same axis comes back (same port, same store)
        assert delivery.sweep(fast) == COUNT - states[OutboxState.SENT]
        cycle(fast)
        cycle(fast)  # a second poll finds nothing new
    assert _states(fast) == {OutboxState.SENT: COUNT}
    assert _received(fast) == COUNT


def test_redis_down_while_sending_loses_nothing(fast: Services, fast_client: Any, sw: SigningWorld,
                                                redis_box: RestartableRedis) -> None:
    with running_axis(fast) as server:
        register_all(fast, server.url)
        request_id = sign_for_sending(fast_client, fast, sw)
        redis_box.stop()
        _send_many(fast_client, sw.world, request_id)  # accepted: the outbox rows are committed
        assert _states(fast) == {OutboxState.PENDING: COUNT}
        redis_box.start()  # an empty Redis: the queued nudges never existed
        assert delivery.sweep(fast) == COUNT
        cycle(fast)
    assert _states(fast) == {OutboxState.SENT: COUNT}
    assert _received(fast) == COUNT


def test_business_refusal_is_dead_at_once_and_failures_end_in_the_dead_letter(
        fast: Services, fast_client: Any, sw: SigningWorld) -> None:
    from signer.interchange.models import AxisUnit

    port = free_port()
    with running_axis(fast, port) as server:
        register_all(fast, server.url)
        with fast.db.session() as db:  # in our directory, unknown to the axis
            db.add(AxisUnit(code="000.00.09.H53", unit_id="x", name="Đơn vị đã rời trục"))
        request_id = sign_for_sending(fast_client, fast, sw)
        sign_in(fast_client, "office-clerk", sw.world.password)
        refused = fast_client.post("/v1/exchange/outgoing", json=send_body(request_id, ["000.00.09.H53"]))
        assert refused.status_code == 201, refused.json
        run_exchange_worker(fast, burst=True)
        item = fast_client.get(f"/v1/exchange/outgoing/{refused.json['id']}").json["recipients"][0]
        assert item["state"] == "dead" and item["attempts"] == 1, item  # no blind retry of a refusal
        assert "unknown-recipient" in item["last_error"]
    # The axis is gone: every attempt fails; after exchange_max_attempts the row is dead, error kept.
    limited = Services.create(fast.settings.model_copy(update={"exchange_max_attempts": 2}))
    try:
        down = fast_client.post("/v1/exchange/outgoing", json=send_body(request_id, [B], number="77"))
        assert down.status_code == 201, down.json
        run_exchange_worker(limited, burst=True)  # attempt 1: the nudge queued with the send
        assert _states(limited) == {"dead": 1, "pending": 1}
        _backoff_elapses(limited)
        assert delivery.sweep(limited) == 1
        run_exchange_worker(limited, burst=True)  # attempt 2 of 2
        item = fast_client.get(f"/v1/exchange/outgoing/{down.json['id']}").json["recipients"][0]
        assert item["state"] == "dead" and item["attempts"] == 2, item
        assert "ConnectionRefusedError" in item["last_error"]
        assert delivery.sweep(limited) == 0  # the dead letter stays put until someone retries it
    finally:
        limited.close()
        fast_client.delete("/v1/session")
