"""AxisClient against a scripted HTTP server: retries, backoff, business errors, timeouts."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exchange.axis import auth
from exchange.axis.client import AxisClient
from exchange.errors import AxisRejected, AxisUnavailable
from exchange.transport import DeliveryStatus, Envelope, MessageType, Transport

NOW = datetime(2024, 3, 5, 1, 2, 3, tzinfo=UTC)
SECRET = "secret-a"
OK = {"status": "OK", "ErrorCode": "0", "ErrorDesc": ""}


@dataclass
class Answer:
    status: int = 200
    body: object = field(default_factory=lambda: dict(OK))
    delay_s: float = 0.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answers: list[Answer]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = answers
        self.seen: list[Seen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/axis"


class Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.seen.append(Seen(self.path, dict(self.headers.items()), body))
        answer = self.server.answers.pop(0) if self.server.answers else Answer()
        time.sleep(answer.delay_s)
        raw = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except OSError:
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted([])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client(url: str, sleeps: list[float], **kwargs: Any) -> AxisClient:
    return AxisClient(url, "sys-a", SECRET, clock=lambda: NOW, sleep=sleeps.append, **kwargs)


def test_retries_5xx_with_exponential_backoff(scripted: Scripted) -> None:
    scripted.answers += [Answer(500), Answer(503), Answer(body={**OK, "DocId": "doc-1"})]
    sleeps: list[float] = []
    packet = b"<edXML/>"
    assert client(scripted.url, sleeps).send(packet, sender="000.00.00.H53", message_type=MessageType.EDOC) == "doc-1"
    assert sleeps == [0.5, 1.0]
    assert len(scripted.seen) == 3
    seen = scripted.seen[-1]
    assert seen.path == "/axis/sendEdoc"
    assert seen.body == packet
    assert seen.headers["Content-Type"] == "application/octet-stream"
    # What the client sent authenticates with the server side of the algorithm.
    call = auth.verify(seen.headers, {"sys-a": SECRET}.get, body=seen.body, now=NOW, required=("from",))
    assert call.param("from") == "000.00.00.H53"
    assert call.param("messagetype") == "edoc"
    assert all(SECRET not in v for v in seen.headers.values())


def test_last_5xx_raises_unavailable(scripted: Scripted) -> None:
    scripted.answers += [Answer(502), Answer(502)]
    sleeps: list[float] = []
    with pytest.raises(AxisUnavailable, match=r"getAgenciesList: HTTP 502 \(after 2 attempts\)") as caught:
        client(scripted.url, sleeps, attempts=2).agencies()
    assert SECRET not in str(caught.value)
    assert sleeps == [0.5]


def test_connection_refused_after_n_attempts() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sleeps: list[float] = []
    with pytest.raises(AxisUnavailable, match=r"network error.*after 3 attempts"):
        client(f"http://127.0.0.1:{port}", sleeps).received(MessageType.EDOC)
    assert sleeps == [0.5, 1.0]


def test_business_error_is_rejected_at_once(scripted: Scripted) -> None:
    scripted.answers.append(Answer(body={"status": "FAIL", "ErrorCode": "unknown-recipient", "ErrorDesc": "nope"}))
    sleeps: list[float] = []
    with pytest.raises(AxisRejected) as caught:
        client(scripted.url, sleeps).send(b"<edXML/>", sender="000.00.00.H53", message_type=MessageType.EDOC)
    assert caught.value.error_code == "unknown-recipient"
    assert caught.value.status == 200
    assert "nope" in str(caught.value)
    assert len(scripted.seen) == 1
    assert sleeps == []


def test_401_is_rejected_without_retry(scripted: Scripted) -> None:
    scripted.answers.append(Answer(401, {"status": "FAIL", "ErrorCode": "auth-bad-signature", "ErrorDesc": "no"}))
    scripted.answers.append(Answer(404, b"<html>not found</html>"))
    sleeps: list[float] = []
    with pytest.raises(AxisRejected) as caught:
        client(scripted.url, sleeps).fetch("doc-1")
    assert (caught.value.error_code, caught.value.status) == ("auth-bad-signature", 401)
    with pytest.raises(AxisRejected) as caught:
        client(scripted.url, sleeps).fetch("doc-1")
    assert (caught.value.error_code, caught.value.status) == ("http-404", 404)
    assert len(scripted.seen) == 2
    assert sleeps == []


def test_timeout_is_retried_then_unavailable(scripted: Scripted) -> None:
    scripted.answers += [Answer(delay_s=0.5), Answer(delay_s=0.5)]
    sleeps: list[float] = []
    started = time.monotonic()
    with pytest.raises(AxisUnavailable, match=r"no answer within 0\.1 s"):
        client(scripted.url, sleeps, timeout_s=0.1, attempts=2).agencies()
    assert time.monotonic() - started < 0.45
    assert sleeps == [0.5]


def test_malformed_json_is_unavailable(scripted: Scripted) -> None:
    scripted.answers.append(Answer(body=b"{not json"))
    with pytest.raises(AxisUnavailable, match="not JSON"):
        client(scripted.url, []).agencies()
    assert len(scripted.seen) == 1


def test_operations_decode_their_answers(scripted: Scripted) -> None:
    row = {"docId": "d1", "serviceType": "eDoc", "messageType": "status", "created_time": "t1",
           "updated_time": "t2", "from": "000.00.01.H53", "to": "000.00.00.H53", "status": "pending",
           "status_desc": ""}
    scripted.answers += [
        Answer(body={**OK, "data": [row]}),
        Answer(body={**OK, "data": base64.b64encode(b"<edXML/>").decode()}),
        Answer(body=OK),
        Answer(body={**OK, "data": [{"docId": "d1", "to": "000.00.01.H53", "status": "done",
                                     "status_desc": "ok", "updated_time": "t3"}]}),
        Answer(body={**OK, "data": [{"id": 7, "code": "000.00.01.H53", "name": "VP", "mail": "", "pid": 1,
                                     "deleted": "true"}]}),
    ]
    axis = client(scripted.url, [])
    transport: Transport = axis  # the client is a Transport (checked by mypy)
    assert transport is axis
    assert axis.received(MessageType.STATUS) == [
        Envelope("d1", "status", "000.00.01.H53", "000.00.00.H53", "pending", "", "t1", "t2", "eDoc")]
    assert axis.fetch("d1") == b"<edXML/>"
    axis.update_status("d1", DeliveryStatus.DONE, "Đã nhận")
    [sent] = axis.sent("d1")
    assert (sent.recipient, sent.status, sent.status_desc) == ("000.00.01.H53", "done", "ok")
    [unit] = axis.synchronize_units()
    assert (unit.id, unit.pid, unit.deleted) == ("7", "1", True)

    received, fetch, update, sent_list, sync = scripted.seen
    assert received.headers["XroadVnpt-messagetype"] == "status"
    assert fetch.body == b"{}"
    assert fetch.headers["XroadVnpt-docId"] == "d1"
    assert update.headers["XroadVnpt-status"] == "done"
    assert update.headers["XroadVnpt-description"] == "%C4%90%C3%A3%20nh%E1%BA%ADn"
    assert sent_list.path == "/axis/getSentEdocList"
    assert sync.path == "/axis/getSynchronizeUnit"
