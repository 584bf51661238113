"""The builder emits the official samples' shape; with_trace; the send-side rules."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from xml.parsers import expat

import pytest

from exchange.edxml import (
    NS,
    Attachment,
    Business,
    BusinessType,
    Code,
    DocumentPacket,
    DocumentType,
    Organ,
    OtherInfo,
    Promulgation,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPacket,
    Trace,
    build,
    document_id,
    parse,
    parse_document,
    pdf_attachment,
    validate_for_sending,
    with_trace,
)
from exchange.errors import PacketError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "edxml"
EDOC = (FIXTURES / "edoc_new.edxml").read_bytes()
STATUS = (FIXTURES / "status_01.edxml").read_bytes()


def _grab(pattern: bytes) -> bytes:
    found = re.search(pattern, EDOC, re.DOTALL)
    assert found is not None
    return found.group(1)


# Verbatim from the sample file, not through our parser.
SAMPLE_SIGNATURE = _grab(rb"(<Signature>.*</Signature>)").decode()
SAMPLE_ZIP = base64.b64decode(_grab(rb"ContentTransferEncoded[^>]*>([^<]*)<"))

Event = tuple[Any, ...]


def events(data: bytes) -> list[Event]:
    """The document as a flat event list: starts with (namespace, local name, prefix, attributes, the
    namespace declarations made on that element), stripped non-empty texts, ends. Whitespace-only
    text is ignored; everything else (names, order, namespaces, prefixes, declarations) counts."""
    out: list[Event] = []
    decls: list[tuple[str, str]] = []
    text: list[str] = []
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.namespace_prefixes = True

    def flush() -> None:
        joined = "".join(text).strip()
        if joined:
            out.append(("text", joined))
        text.clear()

    def start(name: str, attrs: dict[str, str]) -> None:
        flush()
        parts = [*name.split(" "), "", ""][:3]
        out.append(("start", *parts, tuple(sorted(attrs.items())), tuple(decls)))
        decls.clear()

    def end(name: str) -> None:
        flush()
        out.append(("end", name))

    parser.StartNamespaceDeclHandler = lambda prefix, uri: decls.append((prefix or "", uri))
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    parser.Parse(data, True)
    return out


def without(evts: list[Event], local: str) -> list[Event]:
    """``evts`` without the subtree of the (first) element named ``local``."""
    start = next(i for i, e in enumerate(evts) if e[0] == "start" and e[2] == local)
    depth = 0
    for i in range(start, len(evts)):
        depth += {"start": 1, "end": -1}.get(evts[i][0], 0)
        if depth == 0:
            return evts[:start] + evts[i + 1:]
    raise AssertionError("unbalanced")


def sample_document(signature_xml: str = "") -> DocumentPacket:
    """The values of edoc_new.edxml, written out by hand."""
    return DocumentPacket(
        sender=Organ("000.00.00.A80", "UBND xã Hòa Tiến - UBND huyện Hòa Vang - Thành phố Đà Nẵng",
                     "UBND xã Hòa Tiến - UBND huyện Hòa Vang - Thành phố Đà Nẵng",
                     "Số 1 Hoàng Hoa Thám, Quận Ba Đình, Hà Nội", "vpcp@gov.vn", "8043100", "048989898789", "vpcp.vn"),
        recipients=(Organ("28.22.H17", "UBND xã Hòa Sơn - UBND huyện Hòa Vang - Thành phố Đà Nẵng",
                          "UBND xã Hòa Sơn - UBND huyện Hòa Vang - Thành phố Đà Nẵng",
                          "số 62 - Võ Thị Sáu - Ngô Quyền - Hải Phòng", "bxd@moc.gov.vn", "(84-4) 3821 5137",
                          "(023)37366617", "www.haiphong.gov.vn"),),
        document_id="000.00.00.G22,2015/09/30,7816/VPCP-TTĐT",
        code=Code("74fass22", "VPCP-TTĐT"),
        promulgation=Promulgation("Hà Nội", date(2019, 1, 16)),
        document_type=DocumentType(1, 0, "Công văn"),
        subject="V/v kết nối, liên thông phần mềm quản lý văn bản",
        content="V/v kết nối, liên thông phần mềm quản lý văn bản",
        signer=SignerInfo("TL. BO TRUONG", "Cuc truong cuc ung dung cong nghe thong tin", "Nguyen Thanh Phuc"),
        due_date=date(2018, 9, 28),
        other=OtherInfo(0, "Liên thông văn bản quốc gia", "TVC", 2, 22, False,
                        ("Công văn về việc kết nối, liên thông phần mềm quản lý văn bản",)),
        steering_type=1,
        to_places=("Cac bo va co quan ngang bo", "Uy ban nhan dan cac tinh, TP"),
        traces=(Trace("000.00.00.G22", datetime(2018, 9, 28)),),
        business=Business("000.00.00.G22,2014/02/30,7806/VPCP-TTĐT", BusinessType.NEW, "Văn bản điện tử mới",
                          False, StaffInfo("Văn thư văn phòng", "Nguyễn Thị Ngọc Trâm", "84912000001",
                                           "vanthuvanphong@gov.vn")),
        attachments=(Attachment("209", "1896_QD-TTg_m_294779.doc", "application/zip", SAMPLE_ZIP,
                                "1896_QD-TTg_m_294779.doc"),),
        signature_xml=signature_xml,
    )


def sample_status() -> StatusPacket:
    return StatusPacket(
        sender=Organ("000.00.00.H41", "UBND Tỉnh Nghệ An", "UBND Tỉnh Nghệ An",
                     "Số 03, đường Trường Thi, Thành phố Vinh, Tỉnh Nghệ An, Việt Nam", "nghean@gov.vn",
                     "0383 840418", "0383 843049", "www.nghean.vn"),
        response_for=ResponseFor("000.00.00.G22", "7816/VPCP-TTĐT", date(2015, 9, 30),
                                 "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"),
        status_code="01",
        timestamp=datetime(2015, 9, 20, 11, 8, 36),
        description="Văn thư - Phòng Văn thư - Lưu trữ: Đã đến - Phần mềm QLVB đã nhận nhưng văn thư chưa xử lý",
        staff=StaffInfo("Phong hanh chinh", "Nguyen thi ngoc tram", "84912000001", "ngoctram@nghean.vn"),
    )


# ---- shape -------------------------------------------------------------------------------------

def test_document_with_signature_has_the_samples_tree() -> None:
    assert events(build(sample_document(SAMPLE_SIGNATURE))) == events(EDOC)


def test_document_without_signature_differs_only_by_it() -> None:
    built = build(sample_document())
    assert b"Signature" not in built
    assert events(built) == without(events(EDOC), "Signature")


def test_status_has_the_samples_tree() -> None:
    assert events(build(sample_status())) == events(STATUS)


@pytest.mark.parametrize("sample", [EDOC, STATUS], ids=["edoc", "status"])
def test_rebuilding_a_parsed_sample_keeps_its_tree(sample: bytes) -> None:
    assert events(build(parse(sample))) == events(sample)


def test_literal_form() -> None:
    built = build(sample_document()).decode()
    assert built.startswith(f'<?xml version="1.0" encoding="UTF-8"?>\n<edXML xmlns="{NS}">\n')
    assert f'<edXML:edXMLEnvelope xmlns:edXML="{NS}">' in built
    assert f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">UEsDB' in built
    assert "<edXML:PromulgationDate>2019/01/16</edXML:PromulgationDate>" in built
    assert "<edXML:Timestamp>2018/09/28 00:00:00</edXML:Timestamp>" in built


def test_optional_elements_are_omitted() -> None:
    packet = replace(sample_document(), due_date=None, to_places=(), business=None, attachments=(),
                     other=OtherInfo(), promulgation=Promulgation())
    built = build(packet)
    for absent in (b"DueDate", b"ToPlaces", b"Bussiness", b"AttachmentEncoded", b"Reference", b"Appendixes",
                   b"PageAmount", b"PromulgationAmount", b"PromulgationDate"):
        assert absent not in built
    for present in (b"<edXML:TraceHeaderList>", b'<edXML:edXMLManifest version="1.0">', b"<edXML:Place></",
                    b"<edXML:Website>vpcp.vn</"):
        assert present in built
    assert parse(built) == packet


def test_escaping_round_trips() -> None:
    tricky = 'a < b && c > d ]]> "q" \'s\' x\r\ny\rz\tw'
    packet = replace(sample_document(), subject=tricky, content="Ủy ban nhân dân tỉnh Hòa Bình")
    built = build(packet)
    assert b"&lt; b &amp;&amp; c &gt; d ]]&gt;" in built and b"&#13;" in built
    assert parse(built) == packet


@pytest.mark.parametrize("bad", ["\x00", "a\x1bb", "\ud800", "\ufffe", "\x0c"])
def test_characters_xml_cannot_carry_are_refused(bad: str) -> None:
    with pytest.raises(PacketError) as info:
        build(replace(sample_document(), subject=bad))
    assert info.value.code == "invalid-value"


def test_aware_timestamps_are_written_in_vietnam_time() -> None:
    utc = datetime(2024, 5, 1, 3, 0, 0, 999, tzinfo=UTC)
    packet = replace(sample_status(), timestamp=utc)
    assert parse(build(packet)).timestamp == datetime(2024, 5, 1, 10, 0, 0)  # type: ignore[union-attr]
    assert b"2024/05/01 10:00:00" in build(replace(packet, timestamp=utc.astimezone(timezone(timedelta(hours=-5)))))


@pytest.mark.parametrize(("change", "code"), [
    ({"recipients": ()}, "missing-element"),
    ({"document_id": " "}, "missing-element"),
    ({"sender": Organ("000 00")}, "invalid-value"),
    ({"recipients": (Organ(""),)}, "invalid-value"),
    ({"signature_xml": "<Signature>"}, "invalid-value"),
    ({"signature_xml": "<Other/>"}, "invalid-value"),
    ({"signature_xml": "<Signature/><Signature/>"}, "invalid-value"),
    ({"signature_xml": "text<Signature/>"}, "invalid-value"),
    ({"attachments": (Attachment("1", "a", "t", b""), Attachment("1", "b", "t", b""))}, "invalid-value"),
    ({"attachments": (Attachment("", "a", "t", b""),)}, "invalid-value"),
])
def test_builder_refuses_what_parse_would(change: dict[str, Any], code: str) -> None:
    with pytest.raises(PacketError) as info:
        build(replace(sample_document(), **change))
    assert info.value.code == code


@pytest.mark.parametrize("status_code", ["1", "001", "ab", ""])
def test_builder_refuses_bad_status_codes(status_code: str) -> None:
    with pytest.raises(PacketError, match="StatusCode"):
        build(replace(sample_status(), status_code=status_code))


def test_signature_in_another_namespace_is_kept() -> None:
    sig = '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo Id="x" /></Signature>'
    packet = replace(sample_document(), signature_xml=sig)
    assert parse(build(packet)) == packet


# ---- with_trace --------------------------------------------------------------------------------

HOP = Trace("00.53.W00", datetime(2024, 3, 5, 8, 9, 10))


def _plus_hop(packet: DocumentPacket) -> DocumentPacket:
    return replace(packet, traces=(*packet.traces, HOP))


def test_with_trace_on_the_sample_keeps_everything_else() -> None:
    moved = with_trace(EDOC, HOP)
    assert parse_document(moved) == _plus_hop(parse_document(EDOC))
    # Inserted, not rebuilt: the rest of the bytes are the sender's.
    assert len(moved) > len(EDOC) and moved.startswith(EDOC[:3000])
    assert moved.endswith(EDOC[-3000:])
    assert parse_document(with_trace(moved, HOP)).traces[-2:] == (HOP, HOP)


@pytest.mark.parametrize("business", [True, False])
def test_with_trace_on_a_built_packet(business: bool) -> None:
    packet = sample_document()
    packet = packet if business else replace(packet, business=None, traces=())
    assert parse(with_trace(build(packet), HOP)) == _plus_hop(packet)


def test_with_trace_without_prefixes_and_with_a_bom() -> None:
    unprefixed = build(sample_document()).replace(b"edXML:", b"").replace(f' xmlns:edXML="{NS}"'.encode(), b"")
    moved = with_trace(b"\xef\xbb\xbf" + unprefixed, HOP)
    assert b"<TraceHeader>\n" in moved
    assert parse(moved) == _plus_hop(sample_document())


def test_with_trace_rebuilds_when_bytes_cannot_be_inserted() -> None:
    no_list = re.sub(rb"<edXML:TraceHeaderList>.*</edXML:TraceHeaderList>", b"", EDOC, flags=re.DOTALL)
    assert parse_document(with_trace(no_list, HOP)).traces == (HOP,)
    empty = no_list.replace(b"</edXML:MessageHeader>", b"</edXML:MessageHeader><edXML:TraceHeaderList/>")
    assert parse_document(with_trace(empty, HOP)).traces == (HOP,)
    utf16 = EDOC.decode().replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert parse_document(with_trace(utf16, HOP)) == _plus_hop(parse_document(EDOC))


def test_with_trace_finds_the_list_parse_reads() -> None:
    # A foreign TraceHeaderList first, and a TraceHeader after Bussiness (so the new one cannot go
    # before Bussiness): the result must still parse with the hop last.
    foreign = EDOC.replace(b"<edXML:TraceHeaderList>",
                           b'<x:TraceHeaderList xmlns:x="urn:other"><x:TraceHeader/></x:TraceHeaderList>'
                           b"<edXML:TraceHeaderList>", 1)
    assert parse_document(with_trace(foreign, HOP)) == _plus_hop(parse_document(EDOC))
    late = EDOC.replace(b"</edXML:Bussiness>", b"</edXML:Bussiness><edXML:TraceHeader><edXML:OrganId>L</edXML:OrganId>"
                        b"<edXML:Timestamp>2020/01/01 00:00:00</edXML:Timestamp></edXML:TraceHeader>")
    assert parse_document(with_trace(late, HOP)).traces[-2:] == (Trace("L", datetime(2020, 1, 1)), HOP)


def test_with_trace_leaves_status_packets_alone() -> None:
    assert with_trace(STATUS, HOP) is STATUS


def test_with_trace_refuses_what_parse_refuses() -> None:
    with pytest.raises(PacketError) as info:
        with_trace(EDOC, HOP, max_bytes=100)
    assert info.value.code == "too-large"


# ---- send-side rules ---------------------------------------------------------------------------

PDF = b"%PDF-1.7\n%test\n"


def good() -> DocumentPacket:
    return replace(
        sample_document(),
        sender=Organ("000.00.00.H53", "UBND tỉnh Tây Ninh"),
        recipients=(Organ("000.00.00.G22", "Văn phòng Chính phủ"), Organ("000.00.32.H53")),
        code=Code("07", "QĐ-UBND"),
        document_id=document_id("000.00.00.H53", date(2024, 1, 5), Code("07", "QĐ-UBND")),
        attachments=(pdf_attachment("1", "QD 07.PDF", PDF),),
    )


def test_document_id_convention() -> None:
    assert good().document_id == "000.00.00.H53,2024/01/05,07/QĐ-UBND"
    with pytest.raises(PacketError, match="sender"):
        document_id("28.22.H17", date(2024, 1, 5), Code("07", "QĐ-UBND"))


def test_a_good_packet_passes() -> None:
    validate_for_sending(good())
    validate_for_sending(replace(good(), attachments=(), business=Business("x", BusinessType.REVOKE)))


LONG = "Ư" * 600


@pytest.mark.parametrize(("change", "field"), [
    ({"sender": Organ("28.22.H17")}, "sender (From) OrganId"),
    ({"sender": Organ("")}, "sender (From) has an empty OrganId"),
    ({"recipients": ()}, "recipients (To)"),
    ({"recipients": (Organ("000.00.00.G22"), Organ("00.53.W00"))}, "recipient 2 (To) OrganId"),
    ({"recipients": (Organ("000.00.00.G22"), Organ(" "))}, "recipient 2 (To) has an empty OrganId"),
    ({"recipients": (Organ("000.00.00.G22"), Organ("000.00.00.G22"))}, "recipient 2 (To): 000.00.00.G22 is listed"),
    ({"document_id": ""}, "DocumentId"),
    ({"code": Code("1" * 12, "QĐ")}, "CodeNumber is 12 characters long; at most 11"),
    ({"code": Code("07", "Q" * 31)}, "CodeNotation"),
    ({"promulgation": Promulgation("P" * 51)}, "PromulgationInfo.Place"),
    ({"document_type": DocumentType(1, 0, LONG[:101])}, "TypeName"),
    ({"subject": LONG[:501]}, "Subject"),
    ({"content": LONG}, "Content"),
    ({"other": OtherInfo(typer_notation="T" * 11)}, "TyperNotation"),
    ({"other": OtherInfo(appendixes=("ok", LONG[:251]))}, "Appendix"),
    ({"to_places": ("ok", LONG[:151])}, "ToPlaces.Place"),
    ({"other": OtherInfo(priority=5)}, "OtherInfo.Priority must be 0..4"),
    ({"other": OtherInfo(priority=-1)}, "OtherInfo.Priority"),
    ({"steering_type": 3}, "SteeringType must be 0..2"),
    ({"document_type": DocumentType(3)}, "DocumentType.Type must be 1..2"),
    ({"document_type": DocumentType(0)}, "DocumentType.Type"),
    ({"attachments": ()}, "attachments: a new document"),
])
def test_each_rule_fails(change: dict[str, Any], field: str) -> None:
    with pytest.raises(PacketError) as info:
        validate_for_sending(replace(good(), **change))
    assert info.value.code == "invalid-value"
    assert field in str(info.value)
