"""Hostile packets: each is refused with the right PacketError code, before any harm."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from exchange.edxml import NS, parse, with_trace
from exchange.edxml.model import Trace
from exchange.errors import PacketError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "edxml"
EDOC = (FIXTURES / "edoc_new.edxml").read_bytes()
STATUS = (FIXTURES / "status_01.edxml").read_bytes()
BODY = EDOC.split(b"\n", 1)[1]  # without the XML declaration, to put a DOCTYPE in front

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
""" + BODY.replace(b"<edXML:Subject>", b"<edXML:Subject>&lol9;", 1)

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
""" + BODY.replace(b"<edXML:Subject>", b"<edXML:Subject>&xxe;", 1)

EXTERNAL_DTD = b'<?xml version="1.0"?>\n<!DOCTYPE edXML SYSTEM "http://127.0.0.1:9/evil.dtd">\n' + BODY
PARAMETER_ENTITY = (b'<?xml version="1.0"?>\n<!DOCTYPE edXML [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>\n'
                    + BODY)
PLAIN_DOCTYPE = b"<!DOCTYPE edXML>\n" + BODY


def _code(data: bytes, **limits: int) -> str:
    with pytest.raises(PacketError) as info:
        parse(data, **limits)
    return info.value.code


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, EXTERNAL_DTD, PARAMETER_ENTITY, PLAIN_DOCTYPE],
                         ids=["billion-laughs", "xxe", "external-dtd", "parameter-entity", "any-doctype"])
def test_dtds_and_entities_are_forbidden(data: bytes) -> None:
    assert _code(data) == "xml-forbidden"
    with pytest.raises(PacketError, match="refused"):
        with_trace(data, Trace("x", datetime(2024, 1, 1)))


def test_size_is_checked_before_parsing() -> None:
    assert _code(EDOC, max_bytes=len(EDOC) - 1) == "too-large"
    # Garbage that would be "not-xml" is refused for its size first: the parser never sees it.
    assert _code(b"\x00" * 101, max_bytes=100) == "too-large"
    assert parse(EDOC, max_bytes=len(EDOC)).document_id  # type: ignore[union-attr]


def test_too_many_or_too_large_attachments() -> None:
    attachment = EDOC[EDOC.index(b"<Attachment>"):EDOC.index(b"</AttachmentEncoded>")]
    two = EDOC.replace(attachment, attachment + attachment.replace(b"cid:209", b"cid:210"))
    assert _code(two, max_attachments=1) == "too-large"
    assert _code(EDOC, max_attachment_bytes=100) == "too-large"


@pytest.mark.parametrize("data", [
    EDOC.replace(NS.encode(), b"http://example.com/other"),
    EDOC.replace(f' xmlns="{NS}"'.encode(), b"", 1),
    EDOC.replace(b"<edXML xmlns", b"<Packet xmlns").replace(b"</edXML>\n", b"</Packet>\n"),
    b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
], ids=["other-uri", "no-namespace", "other-root", "xhtml"])
def test_wrong_namespace(data: bytes) -> None:
    assert _code(data) == "wrong-namespace"


@pytest.mark.parametrize("data", [
    b"", b"\x00\x01\x02garbage", b'{"ErrorCode": "0"}', b"<edXML", EDOC[:-40], b"\xff\xfe\x00<",
    EDOC.replace(b"<edXML:Subject>", b"<edXML:Subject>&undefined;", 1),
    EDOC.replace(b'<?xml version="1.0" encoding="UTF-8"?>', b'<?xml version="1.0" encoding="x-unknown"?>'),
])
def test_not_xml(data: bytes) -> None:
    assert _code(data) == "not-xml"


def test_document_without_recipients() -> None:
    start, end = EDOC.index(b"<edXML:To>"), EDOC.index(b"</edXML:To>") + len(b"</edXML:To>")
    assert _code(EDOC[:start] + EDOC[end:]) == "missing-element"


@pytest.mark.parametrize("payload", [b"not base64!", b"UEsDBBQ", b"UEsDBBQA===="])
def test_bad_base64(payload: bytes) -> None:
    start = EDOC.index(b"UEsDB")
    end = EDOC.index(b"</edXML:ContentTransferEncoded>")
    assert _code(EDOC[:start] + payload + EDOC[end:]) == "invalid-value"


def test_deeply_nested_signature_does_not_exhaust_the_stack() -> None:
    depth = 5000
    nested = b"<Signature>" + b"<a>" * depth + b"</a>" * depth + b"</Signature>"
    start, end = EDOC.index(b"<Signature>"), EDOC.index(b"</Signature>") + len(b"</Signature>")
    assert _code(EDOC[:start] + nested + EDOC[end:]) == "invalid-value"


def test_status_packets_with_forbidden_xml_too() -> None:
    doctype = b'<!DOCTYPE edXML [<!ENTITY a "b">]>\n' + STATUS.split(b"\n", 1)[1]
    assert _code(doctype) == "xml-forbidden"
