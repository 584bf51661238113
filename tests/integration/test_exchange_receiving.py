"""Hostile packets at the receiver: whatever the axis hands over (billion laughs, an external
entity, a wrong namespace, no recipient, an oversized attachment, garbage) is refused with a clear
reason to the axis, nothing is stored, and the same poll goes on to store the next good packet."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exchange.axis.store import Store
from signer.interchange import local_axis, receiving
from signer.interchange.models import Incoming, OutboxItem
from signer.services import Services
from signer.settings import Settings
from tests.conftest import World
from tests.exchange_support import register_all, running_axis

B = "000.00.02.H53"
SAMPLE = (Path(__file__).parents[1] / "fixtures" / "edxml" / "edoc_new.edxml").read_bytes()
NS = b"http://www.mic.gov.vn/TBT/QCVN_102_2016"


def _addressed_to_b(data: bytes) -> bytes:
    return data.replace(b"<edXML:OrganId>28.22.H17</edXML:OrganId>", f"<edXML:OrganId>{B}</edXML:OrganId>".encode())


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (n, (b"&lol%d;" % (n - 1) if n > 1 else b"&lol;") * 10)
                     for n in range(1, 10))
          + b']><edXML xmlns="' + NS + b'">&lol9;</edXML>')
XXE = (b'<?xml version="1.0"?><!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
       b'<edXML xmlns="' + NS + b'"><edXML:edXMLEnvelope xmlns:edXML="' + NS + b'">&xxe;</edXML:edXMLEnvelope></edXML>')
WRONG_NS = _addressed_to_b(SAMPLE).replace(NS, b"http://example.org/not-edxml")
NO_TO = SAMPLE.split(b"<edXML:To>")[0] + SAMPLE.split(b"</edXML:To>")[1]
HOSTILE = {"billion-laughs": LAUGHS, "external-entity": XXE, "wrong-namespace": WRONG_NS, "missing-to": NO_TO,
           "garbage": b"\x00\x01not xml at all"}


@pytest.fixture
def small(settings: Settings) -> Iterator[Services]:
    """Services whose packet limit is small enough to exceed without allocating 200 MB."""
    svc = Services.create(settings.model_copy(update={"axis_max_packet_bytes": 64 * 1024}))
    yield svc
    svc.close()


def _inject(services: Services, packets: dict[str, bytes]) -> dict[str, str]:
    """Put packets straight into the local axis's store, as if another system had sent them."""
    ids = {}
    with Store(local_axis.folder(services.settings) / "axis.db") as store:
        for name, data in packets.items():
            doc_id = str(uuid.uuid4())
            store.add_packet(doc_id, sender="000.00.00.A80", message_type="edoc", edxml=data, recipients=[B],
                             now=datetime.now(UTC))
            ids[name] = doc_id
    return ids


def test_hostile_packets_are_refused_and_the_poll_goes_on(small: Services, world: World) -> None:
    payload = base64.b64encode(b"%PDF-1.7 " + b"x" * 100_000)
    oversized = re.sub(rb"(<edXML:ContentTransferEncoded[^>]*>)[^<]*", lambda m: m.group(1) + payload,
                       _addressed_to_b(SAMPLE))
    with running_axis(small) as server:
        register_all(small, server.url)
        ids = _inject(small, {**HOSTILE, "oversized": oversized, "good": _addressed_to_b(SAMPLE)})
        report = receiving.poll(small, world.other)
        with Store(local_axis.folder(small.settings) / "axis.db") as store:
            outcome = {name: store.deliveries(doc_id)[0] for name, doc_id in ids.items()}
    assert sorted(report.refused) == sorted(doc_id for name, doc_id in ids.items() if name != "good")
    assert report.documents == 1
    for name in (*HOSTILE, "oversized"):
        assert outcome[name].status == "fail", name
    assert "xml-forbidden" in outcome["billion-laughs"].status_desc
    assert "xml-forbidden" in outcome["external-entity"].status_desc
    assert "wrong-namespace" in outcome["wrong-namespace"].status_desc
    assert "missing-element" in outcome["missing-to"].status_desc
    assert "too-large" in outcome["oversized"].status_desc
    assert outcome["good"].status == "done"
    with small.db.session(readonly=True) as db:
        stored = db.scalars(select(Incoming)).all()
        assert len(stored) == 1 and stored[0].document_id.startswith("000.00.00.G22")
        # The good packet carries a zipped .doc and no signed PDF: stored, and answered 02 with why.
        assert stored[0].state == "rejected" and stored[0].verdict == "invalid"
        answers = db.scalars(select(OutboxItem).where(OutboxItem.kind == "status")).all()
        assert [a.status_code for a in answers] == ["02"]
        assert db.scalar(select(func.count()).select_from(Incoming)) == 1
