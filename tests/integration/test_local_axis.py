"""The local axis served on a loopback port, driven by AxisClient as the service drives the real axis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange import edxml
from exchange.axis import config as axis_config
from exchange.axis.client import AxisClient
from exchange.axis.config import AxisConfig, SystemAccount, Unit
from exchange.axis.server import AxisServer, make_server
from exchange.errors import AxisRejected
from exchange.transport import DeliveryStatus, MessageType

A, B, C, C_UNIT = "000.00.00.H53", "000.00.01.H53", "000.00.02.H53", "000.01.02.H53"
SECRETS = {"sys-a": "secret-a-0123456789", "sys-b": "secret-b-0123456789", "sys-c": "secret-c-0123456789"}
CONFIG = AxisConfig([
    SystemAccount("sys-a", SECRETS["sys-a"], [Unit(A, "UBND tỉnh Tây Ninh", "ubnd@tayninh.gov.vn")]),
    SystemAccount("sys-b", SECRETS["sys-b"], [Unit(B, "Văn phòng UBND tỉnh")]),
    SystemAccount("sys-c", SECRETS["sys-c"], [Unit(C, "Sở Nội vụ"), Unit(C_UNIT, "Phòng Tổ chức")]),
])
AXIS_ID = "00.00.W00"
CODE = edxml.Code("07", "QĐ-UBND")
DOC_ID = f"{A},2024/03/05,07/QĐ-UBND"


def document(*recipients: str, sender: str = A) -> bytes:
    return edxml.build(edxml.DocumentPacket(
        sender=edxml.Organ(sender, organ_name="UBND tỉnh Tây Ninh"),
        recipients=tuple(edxml.Organ(r) for r in recipients),
        document_id=DOC_ID, code=CODE,
        promulgation=edxml.Promulgation("Tây Ninh", date(2024, 3, 5)),
        subject="Về việc thử nghiệm trục liên thông",
        traces=(edxml.Trace(sender, datetime(2024, 3, 5, 9, 0, 0)),),  # edXML times are naive local
        business=edxml.Business(DOC_ID),
    ))


def status_packet() -> bytes:
    return edxml.build(edxml.StatusPacket(
        sender=edxml.Organ(B), response_for=edxml.ResponseFor(A, str(CODE), date(2024, 3, 5), DOC_ID),
        status_code=edxml.STATUS_ARRIVED, timestamp=datetime(2024, 3, 5, 10, 0, 0),
        description="Đã đến",
    ))


@contextmanager
def running(db: Path, **kwargs: Any) -> Iterator[AxisServer]:
    server = make_server(CONFIG, db, "127.0.0.1", 0, log_requests=False, **kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def axis(tmp_path: Path) -> Iterator[AxisServer]:
    with running(tmp_path / "axis.sqlite") as server:
        yield server


def client(server: AxisServer, system: str, **kwargs: Any) -> AxisClient:
    return AxisClient(server.url, system, SECRETS[system], attempts=1, **kwargs)


def refused(call: Callable[..., object], *args: Any, **kwargs: Any) -> AxisRejected:
    with pytest.raises(AxisRejected) as caught:
        call(*args, **kwargs)
    return caught.value


def test_document_reaches_each_recipient_with_the_axis_trace(axis: AxisServer) -> None:
    a, b, c = client(axis, "sys-a"), client(axis, "sys-b"), client(axis, "sys-c")
    packet = document(B, C)
    doc_id = a.send(packet, sender=A, message_type=MessageType.EDOC)

    for system, unit in ((b, B), (c, C)):
        [envelope] = system.received(MessageType.EDOC)
        assert (envelope.doc_id, envelope.sender, envelope.recipient) == (doc_id, A, unit)
        assert (envelope.message_type, envelope.status, envelope.service_type) == ("edoc", "pending", "eDoc")
        assert system.received(MessageType.STATUS) == []
        fetched = edxml.parse(system.fetch(doc_id))
        assert isinstance(fetched, edxml.DocumentPacket)
        assert [t.organ_id for t in fetched.traces] == [A, AXIS_ID]
        assert fetched.document_id == DOC_ID
    assert a.received(MessageType.EDOC) == []

    # Only recipients fetch; only the sender lists the deliveries.
    assert refused(a.fetch, doc_id).error_code == "not-found"
    assert refused(b.sent, doc_id).error_code == "not-found"
    assert refused(b.update_status, "no-such-doc", DeliveryStatus.DONE).error_code == "not-found"

    b.update_status(doc_id, DeliveryStatus.DONE, "Đã nhận")
    c.update_status(doc_id, DeliveryStatus.PROCESSING)
    assert b.received(MessageType.EDOC) == []
    assert [e.status for e in c.received(MessageType.EDOC)] == ["processing"]  # still to finish
    sent = {s.recipient: (s.status, s.status_desc) for s in a.sent(doc_id)}
    assert sent == {B: ("done", "Đã nhận"), C: ("processing", "")}
    c.update_status(doc_id, DeliveryStatus.FAIL, "sai nơi nhận")
    assert c.received(MessageType.EDOC) == []
    assert {s.recipient: s.status for s in a.sent(doc_id)} == {B: "done", C: "fail"}


def test_status_packet_reaches_the_original_sender(axis: AxisServer) -> None:
    a, b = client(axis, "sys-a"), client(axis, "sys-b")
    doc_id = b.send(status_packet(), sender=B, message_type=MessageType.STATUS)
    assert a.received(MessageType.EDOC) == []
    [envelope] = a.received(MessageType.STATUS)
    assert (envelope.doc_id, envelope.sender, envelope.recipient, envelope.message_type) == (doc_id, B, A, "status")
    fetched = edxml.parse(a.fetch(doc_id))
    assert isinstance(fetched, edxml.StatusPacket)
    assert (fetched.status_code, fetched.description) == ("01", "Đã đến")
    # 13 (take back) comes from the original sender; its ResponseFor names the recipient.
    take_back = edxml.build(edxml.StatusPacket(
        sender=edxml.Organ(A), response_for=edxml.ResponseFor(B, str(CODE), date(2024, 3, 5), DOC_ID),
        status_code=edxml.STATUS_TAKE_BACK, timestamp=datetime(2024, 3, 5, 11, 0, 0), description="Gửi nhầm",
    ))
    back_id = a.send(take_back, sender=A, message_type=MessageType.STATUS)
    assert [(e.doc_id, e.sender) for e in b.received(MessageType.STATUS)] == [(back_id, A)]
    # A status packet cannot pose as a document.
    error = refused(b.send, status_packet(), sender=B, message_type=MessageType.EDOC)
    assert error.error_code == "wrong-message-type"


def test_bad_signature_and_stale_timestamp_are_401_and_store_nothing(axis: AxisServer) -> None:
    packet = document(B)
    forger = AxisClient(axis.url, "sys-a", "not-the-secret-of-a", attempts=1)
    error = refused(forger.send, packet, sender=A, message_type=MessageType.EDOC)
    assert (error.status, error.error_code) == (401, "auth-bad-signature")
    unknown = AxisClient(axis.url, "sys-x", "whatever-secret", attempts=1)
    assert refused(unknown.agencies).error_code == "auth-unknown-system"
    late = client(axis, "sys-a", clock=lambda: datetime.now(UTC) - timedelta(minutes=10))
    error = refused(late.send, packet, sender=A, message_type=MessageType.EDOC)
    assert (error.status, error.error_code) == (401, "auth-stale-timestamp")
    assert axis.store.count_packets() == 0
    assert client(axis, "sys-b").received(MessageType.EDOC) == []


def test_sender_must_belong_to_the_calling_system(axis: AxisServer) -> None:
    a = client(axis, "sys-a")
    error = refused(a.send, document(C, sender=B), sender=B, message_type=MessageType.EDOC)
    assert error.error_code == "sender-not-owned"
    # The header and the packet must agree on the sender.
    error = refused(client(axis, "sys-c").send, document(B), sender=C, message_type=MessageType.EDOC)
    assert error.error_code == "sender-mismatch"
    assert axis.store.count_packets() == 0


def test_unknown_recipient_refuses_the_whole_packet(axis: AxisServer) -> None:
    error = refused(client(axis, "sys-a").send, document(B, "000.00.09.H53"), sender=A,
                    message_type=MessageType.EDOC)
    assert error.error_code == "unknown-recipient"
    assert "000.00.09.H53" in str(error)
    assert axis.store.count_packets() == 0
    assert client(axis, "sys-b").received(MessageType.EDOC) == []


def test_hostile_xml_is_refused_with_the_packet_error_code(axis: AxisServer) -> None:
    a = client(axis, "sys-a")
    laughs = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
              b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><edXML>&lol2;</edXML>')
    assert refused(a.send, laughs, sender=A, message_type=MessageType.EDOC).error_code == "xml-forbidden"
    assert refused(a.send, b"\x00garbage<", sender=A, message_type=MessageType.EDOC).error_code == "not-xml"
    assert axis.store.count_packets() == 0
    assert len(a.agencies()) == 4  # still answering


def test_oversized_packet_is_refused_before_reading(tmp_path: Path) -> None:
    with running(tmp_path / "axis.sqlite", max_packet_bytes=2048) as server:
        a = client(server, "sys-a")
        big = document(B) + b" " * 4096
        error = refused(a.send, big, sender=A, message_type=MessageType.EDOC)
        assert (error.status, error.error_code) == (413, "too-large")
        assert server.store.count_packets() == 0


def test_deliveries_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "axis.sqlite"
    with running(db) as server:
        doc_id = client(server, "sys-a").send(document(B, C), sender=A, message_type=MessageType.EDOC)
        client(server, "sys-c").update_status(doc_id, DeliveryStatus.DONE)
    with running(db) as server:
        assert [e.doc_id for e in client(server, "sys-b").received(MessageType.EDOC)] == [doc_id]
        assert client(server, "sys-c").received(MessageType.EDOC) == []
        assert {s.recipient: s.status for s in client(server, "sys-a").sent(doc_id)} == {B: "pending", C: "done"}


def test_directory_lists_every_unit_with_its_parent(axis: AxisServer) -> None:
    b = client(axis, "sys-b")
    agencies = {x.code: (x.name, x.pid) for x in b.agencies()}
    assert agencies == {
        A: ("UBND tỉnh Tây Ninh", ""),
        B: ("Văn phòng UBND tỉnh", A),
        C: ("Sở Nội vụ", A),
        C_UNIT: ("Phòng Tổ chức", C),
    }
    units = b.synchronize_units()
    assert [u.code for u in units] == [A, B, C, C_UNIT]
    assert not any(u.deleted for u in units)


def test_config_file_round_trip(tmp_path: Path) -> None:
    (tmp_path / "b.secret").write_text(SECRETS["sys-b"] + "\n")
    path = tmp_path / "axis.json"
    AxisConfig([CONFIG.systems[0], SystemAccount("sys-b", SECRETS["sys-b"], CONFIG.systems[1].organs,
                                                 secret_file="b.secret")]).dump(path)
    assert SECRETS["sys-b"] not in path.read_text()
    loaded = axis_config.load(path)
    assert loaded.secret_for("sys-b") == SECRETS["sys-b"]
    assert loaded.secret_for("sys-a") == SECRETS["sys-a"]
    assert loaded.unit(B) == Unit(B, "Văn phòng UBND tỉnh")
    with pytest.raises(ValueError, match="two systems"):
        AxisConfig([SystemAccount("x", "s", [Unit(A, "a")]), SystemAccount("y", "t", [Unit(A, "a")])])
