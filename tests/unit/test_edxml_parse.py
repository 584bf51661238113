"""Parsing the official samples and the tolerated variants."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from exchange.edxml import (
    NS,
    BusinessType,
    DocumentPacket,
    Priority,
    ResponseFor,
    StatusPacket,
    SteeringType,
    parse,
    parse_document,
    parse_status,
    unpack,
)
from exchange.errors import PacketError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "edxml"
EDOC = (FIXTURES / "edoc_new.edxml").read_bytes()
STATUS = (FIXTURES / "status_01.edxml").read_bytes()


def _code(data: bytes) -> str:
    with pytest.raises(PacketError) as info:
        parse(data)
    return info.value.code


def test_document_sample() -> None:
    packet = parse(EDOC)
    assert isinstance(packet, DocumentPacket)
    assert packet.sender.organ_id == "000.00.00.A80"
    assert packet.sender.organization_in_charge == "UBND xã Hòa Tiến - UBND huyện Hòa Vang - Thành phố Đà Nẵng"
    assert packet.sender.website == "vpcp.vn"
    assert [r.organ_id for r in packet.recipients] == ["28.22.H17"]
    assert packet.recipients[0].organ_add == "số 62 - Võ Thị Sáu - Ngô Quyền - Hải Phòng"
    assert packet.recipients[0].telephone == "(84-4) 3821 5137"
    assert packet.document_id == "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT"
    assert (packet.code.number, packet.code.notation) == ("74fass22", "VPCP-TTĐT")
    assert str(packet.code) == "74fass22/VPCP-TTĐT"
    assert (packet.promulgation.place, packet.promulgation.date) == ("Hà Nội", date(2019, 1, 16))
    assert (packet.document_type.type, packet.document_type.detail, packet.document_type.name) == (1, 0, "Công văn")
    assert packet.subject == "V/v kết nối, liên thông phần mềm quản lý văn bản"
    assert packet.signer.competence == "TL. BO TRUONG"
    assert packet.due_date == date(2018, 9, 28)
    assert packet.other.priority == Priority.NORMAL
    assert packet.other.sphere_of_promulgation == "Liên thông văn bản quốc gia"
    assert (packet.other.promulgation_amount, packet.other.page_amount, packet.other.direction) == (2, 22, False)
    assert packet.other.appendixes == ("Công văn về việc kết nối, liên thông phần mềm quản lý văn bản",)
    assert packet.steering_type == SteeringType.STEERING
    assert packet.to_places == ("Cac bo va co quan ngang bo", "Uy ban nhan dan cac tinh, TP")
    assert packet.response_for == ()
    assert [(t.organ_id, t.timestamp) for t in packet.traces] == [("000.00.00.G22", datetime(2018, 9, 28))]
    assert packet.business is not None
    assert packet.business_type == BusinessType.NEW
    assert packet.business.reason == "Văn bản điện tử mới"
    assert packet.business.staff is not None
    assert packet.business.staff.staff == "Nguyễn Thị Ngọc Trâm"
    assert packet.business.staff.mobile == "84912000001"
    assert packet.signature_xml.startswith("<Signature>\n        <SignedInfo>")
    assert "<DigestValue>FwgIqsSYJshUS2+wlOM61L+q7Aw=</DigestValue>" in packet.signature_xml
    [attachment] = packet.attachments
    assert (attachment.content_id, attachment.name, attachment.content_type) == (
        "209", "1896_QD-TTg_m_294779.doc", "application/zip")
    assert attachment.description == "1896_QD-TTg_m_294779.doc"


def test_sample_attachment_unzips_to_the_doc() -> None:
    [file] = unpack(parse_document(EDOC).attachments[0])
    assert file.name == "1896_QD-TTg_m_294779.doc"
    assert file.content_type == "application/msword"
    assert file.data == b"Noi dung van ban mau (sample document body).\n"


def test_status_sample() -> None:
    packet = parse(STATUS)
    assert isinstance(packet, StatusPacket)
    assert packet.sender.organ_id == "000.00.00.H41"
    assert packet.sender.organ_name == "UBND Tỉnh Nghệ An"
    assert packet.sender.organ_add == "Số 03, đường Trường Thi, Thành phố Vinh, Tỉnh Nghệ An, Việt Nam"
    assert packet.response_for == ResponseFor("000.00.00.G22", "7816/VPCP-TTĐT", date(2015, 9, 30),
                                              "000.00.00.G22,2015/09/30,7816/VPCP-TTĐT")
    assert packet.status_code == "01"
    assert packet.timestamp == datetime(2015, 9, 20, 11, 8, 36)
    assert packet.description.startswith("Văn thư - Phòng Văn thư - Lưu trữ: Đã đến")
    assert (packet.staff.department, packet.staff.mobile, packet.staff.email) == (
        "Phong hanh chinh", "84912000001", "ngoctram@nghean.vn")


def test_parse_document_and_parse_status_refuse_the_other_kind() -> None:
    assert parse_status(STATUS).status_code == "01"
    assert parse_document(EDOC, max_bytes=len(EDOC)).code.number == "74fass22"
    with pytest.raises(PacketError, match="expected a document packet") as info:
        parse_document(STATUS)
    assert info.value.code == "invalid-value"
    with pytest.raises(PacketError, match="expected a status packet"):
        parse_status(EDOC)


def test_root_variants() -> None:
    capital = EDOC.replace(b"<edXML xmlns", b"<EdXML xmlns").replace(b"</edXML>\n", b"</EdXML>\n")
    assert parse(capital) == parse(EDOC)
    start, end = EDOC.index(b"<edXML:edXMLEnvelope"), EDOC.index(b"</edXML:edXMLEnvelope>")
    envelope_only = EDOC[start:end] + b"</edXML:edXMLEnvelope>"
    packet = parse_document(envelope_only.replace(b"<edXML:edXMLManifest", b"<edXML:Ignored")
                            .replace(b"</edXML:edXMLManifest>", b"</edXML:Ignored>"))
    assert packet.attachments == () and packet.document_id == parse_document(EDOC).document_id


def test_status_timestamp_in_day_first_order_and_short_status_code() -> None:
    data = (STATUS.replace(b"2015/09/20 11:08:36", b"20/09/2015 11:08:36")
            .replace(b"<edXML:StatusCode>01<", b"<edXML:StatusCode>3<"))
    packet = parse_status(data)
    assert packet.timestamp == datetime(2015, 9, 20, 11, 8, 36)
    assert packet.status_code == "03"


@pytest.mark.parametrize(("text", "expected"), [
    ("2015/09/20 11:08:36", datetime(2015, 9, 20, 11, 8, 36)),
    ("20/09/2015 11:08:36", datetime(2015, 9, 20, 11, 8, 36)),
    ("2015/09/20", datetime(2015, 9, 20)),
    ("2015-09-20T11:08:36", datetime(2015, 9, 20, 11, 8, 36)),
    ("2015-09-20T04:08:36+00:00", datetime(2015, 9, 20, 11, 8, 36)),
    ("2015/09/20 11:08:36.250", datetime(2015, 9, 20, 11, 8, 36)),
])
def test_timestamp_forms(text: str, expected: datetime) -> None:
    data = STATUS.replace(b"2015/09/20 11:08:36", text.encode())
    assert parse_status(data).timestamp == expected


@pytest.mark.parametrize(("old", "new"), [
    (b"<edXML:PromulgationDate>2019/01/16<", b"<edXML:PromulgationDate>2019/13/16<"),
    (b"<edXML:PromulgationDate>2019/01/16<", b"<edXML:PromulgationDate>16 Jan 2019<"),
    (b"<edXML:Timestamp>2018/09/28 00:00:00<", b"<edXML:Timestamp>yesterday<"),
    (b"<edXML:Timestamp>2018/09/28 00:00:00<", b"<edXML:Timestamp>2018/09/28 25:00:00<"),
    (b"<edXML:PageAmount>22<", b"<edXML:PageAmount>22 pages<"),
    (b"<edXML:Type>1<", b"<edXML:Type>one<"),
    (b"<edXML:Direction>false<", b"<edXML:Direction>maybe<"),
    (b"<edXML:BussinessDocType>0<", b"<edXML:BussinessDocType>7<"),
    (b"<edXML:OrganId>28.22.H17<", b"<edXML:OrganId>28 22 H17<"),
    (b"UEsDB", b"!!!!"),
    (b"<ContentId>cid:209<", b"<ContentId>cid:<"),
])
def test_invalid_values(old: bytes, new: bytes) -> None:
    assert old in EDOC
    assert _code(EDOC.replace(old, new, 1)) == "invalid-value"


@pytest.mark.parametrize(("old", "new"), [
    ("<edXML:DocumentId>000.00.00.G22,2015/09/30,7816/VPCP-TTĐT<".encode(), b"<edXML:DocumentId><"),
    (b"<edXML:OrganId>000.00.00.A80<", b"<edXML:OrganId><"),
    (b"<edXML:edXMLHeader>", b"<edXML:Other>"),
    (b"<ContentId>cid:209<", b"<ContentId>cid:210<"),  # manifest reference without its file
])
def test_missing_elements(old: bytes, new: bytes) -> None:
    data = EDOC.replace(old, new, 1)
    if new == b"<edXML:Other>":
        data = data.replace(b"</edXML:edXMLHeader>", b"</edXML:Other>")
    assert _code(data) == "missing-element"


@pytest.mark.parametrize("status_code", [b"", b"x", b"001", b"OK"])
def test_status_code_must_be_two_digits(status_code: bytes) -> None:
    assert _code(STATUS.replace(b">01<", b">" + status_code + b"<")) == "invalid-value"


def test_status_without_response_for_or_timestamp() -> None:
    no_response = STATUS.replace(b"edXML:ResponseFor>", b"edXML:Ignored>")
    assert _code(no_response) == "missing-element"
    assert _code(STATUS.replace(b"2015/09/20 11:08:36", b"")) == "missing-element"


def test_missing_optional_elements_are_tolerated() -> None:
    minimal = f"""<edXML xmlns="{NS}"><edXMLEnvelope><edXMLHeader><MessageHeader>
        <From><OrganId>000.00.00.H53</OrganId></From><To><OrganId>000.00.00.G22</OrganId></To>
        <DocumentId>abc</DocumentId></MessageHeader></edXMLHeader></edXMLEnvelope></edXML>""".encode()
    packet = parse_document(minimal)
    assert packet.document_id == "abc" and packet.recipients[0].organ_name == ""
    assert packet.promulgation.date is None and packet.business is None and packet.traces == ()
    assert packet.other.priority == 0 and packet.document_type.type == 1 and packet.signature_xml == ""


def test_elements_without_namespace_and_unknown_elements_are_tolerated() -> None:
    sloppy = EDOC.replace(b"<edXML:Subject>", b'<Subject xmlns="">').replace(b"</edXML:Subject>", b"</Subject>")
    sloppy = sloppy.replace(b"<edXML:SteeringType>", b"<edXML:Unknown>x</edXML:Unknown><edXML:SteeringType>")
    assert parse(sloppy) == parse(EDOC)


def test_unknown_priority_is_kept_for_the_send_side_to_refuse() -> None:
    data = EDOC.replace(b"<edXML:Priority>0<", b"<edXML:Priority>9<")
    assert parse_document(data).other.priority == 9


def test_manifest_fills_in_what_the_attachment_leaves_out() -> None:
    data = EDOC.replace(b"<ContentType>application/zip</ContentType>", b"")
    assert parse_document(data).attachments[0].content_type == "application/zip"


def test_base64_with_line_breaks() -> None:
    start = EDOC.index(b"UEsDB")
    wrapped = EDOC[:start + 8] + b"\r\n  " + EDOC[start + 8:]
    assert parse(wrapped) == parse(EDOC)
