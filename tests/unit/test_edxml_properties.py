"""parse(build(x)) == x for generated packets.

The documented limits of the round trip are respected by the strategies: texts have no surrounding
XML whitespace (the parser strips it), timestamps have no sub-second part (the format has none), and
``signature_xml`` is in the canonical form the parser produces.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.edxml import (
    STATUS_CODES,
    Attachment,
    Business,
    BusinessType,
    Code,
    DocumentPacket,
    DocumentType,
    Organ,
    OtherInfo,
    Priority,
    Promulgation,
    Receiver,
    Replacement,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusPacket,
    SteeringType,
    Trace,
    UpdateInfo,
    build,
    parse,
    parse_document,
    parse_status,
)
from exchange.errors import PacketError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "edxml"
SAMPLE_SIGNATURE = parse_document((FIXTURES / "edoc_new.edxml").read_bytes()).signature_xml

VIETNAMESE = [
    "Ủy ban nhân dân tỉnh Hòa Bình", "Văn phòng Chính phủ", "Quyết định", "V/v kết nối, liên thông",
    "Nguyễn Thị Ngọc Trâm", "Sở Thông tin và Truyền thông", "Hỏa tốc", "ĐẶNG VĂN ĐỨC", "Thừa Thiên Huế",
]
SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any character XML 1.0 carries (no C0 controls but tab/CR/LF, no surrogates or non-characters),
# plus the ones escaping must get right.
chars = st.characters(exclude_categories=("Cs", "Cc", "Cn")) | st.sampled_from("\t\r\n&<>\"']")
free_text = st.text(chars, max_size=30)
text = (st.sampled_from(VIETNAMESE) | free_text | st.just("")).map(lambda s: s.strip(" \t\r\n"))
digits = st.integers(0, 99)
strict_ids = st.builds(lambda a, b, c, letter, n: f"{a:03d}.{b:02d}.{c:02d}.{letter}{n:02d}",
                       st.integers(0, 999), digits, digits, st.sampled_from("GHAW"), digits)
organ_ids = strict_ids | st.sampled_from(["00.53.W00", "01.02.G22", "28.22.H17", "000.00.00.A80"])
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))
timestamps = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 12, 31)).map(
    lambda d: d.replace(microsecond=0))
ints = st.integers(-1000, 10**9)


def tuples(strategy: st.SearchStrategy[object], max_size: int = 3) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=max_size).map(tuple)


organs = st.builds(Organ, organ_ids, text, text, text, text, text, text, text)
staff = st.builds(StaffInfo, text, text, text, text)
response_for = st.builds(ResponseFor, text, text, st.none() | dates, text)


@st.composite
def businesses(draw: st.DrawFn) -> Business | None:
    kind = draw(st.none() | st.sampled_from(BusinessType))
    if kind is None:
        return None
    update = None
    if kind == BusinessType.UPDATE:
        update = draw(st.builds(UpdateInfo, text, text, tuples(st.builds(Receiver, text, st.integers(0, 3)))))
    replacements: tuple[Replacement, ...] = ()
    if kind == BusinessType.REPLACE:
        replacements = draw(st.lists(st.builds(Replacement, text, tuples(organ_ids)), max_size=2).map(tuple))
    return Business(draw(text), kind, draw(text), draw(st.booleans()), draw(st.none() | staff), update, replacements)


attachments = st.lists(
    st.builds(Attachment, st.text("abcdefghij0123456789-.@", min_size=1, max_size=12), text, text,
              st.binary(max_size=2048), text),
    max_size=10, unique_by=lambda a: a.content_id).map(tuple)

documents = st.builds(
    DocumentPacket,
    sender=organs,
    recipients=st.lists(organs, min_size=1, max_size=4).map(tuple),
    document_id=text.filter(bool),
    code=st.builds(Code, text, text),
    promulgation=st.builds(Promulgation, text, st.none() | dates),
    document_type=st.builds(DocumentType, st.integers(1, 2), ints, text),
    subject=text,
    content=text,
    signer=st.builds(SignerInfo, text, text, text),
    due_date=st.none() | dates,
    other=st.builds(OtherInfo, st.sampled_from(Priority), text, text, st.none() | ints, st.none() | ints,
                    st.booleans(), tuples(text)),
    response_for=tuples(response_for, 2),
    steering_type=st.sampled_from(SteeringType),
    to_places=tuples(text),
    traces=tuples(st.builds(Trace, text, timestamps)),
    business=businesses(),
    attachments=attachments,
    signature_xml=st.sampled_from(["", SAMPLE_SIGNATURE,
                                   '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo /></Signature>']),
)

statuses = st.builds(StatusPacket, organs, response_for, st.sampled_from(sorted(STATUS_CODES)), timestamps, text,
                     staff)


@SETTINGS
@given(documents)
def test_documents_round_trip(packet: DocumentPacket) -> None:
    assert parse(build(packet)) == packet


@SETTINGS
@given(statuses)
def test_status_packets_round_trip(packet: StatusPacket) -> None:
    assert parse(build(packet)) == packet


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=20))
def test_any_text_round_trips_stripped_or_is_refused(value: str) -> None:
    packet = StatusPacket(Organ("000.00.00.H53"), ResponseFor("x"), "01", datetime(2024, 1, 1), value)
    carriable = all(c in "\t\r\n" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000"
                    for c in value)
    if not carriable:
        with pytest.raises(PacketError) as info:
            build(packet)
        assert info.value.code == "invalid-value"
    else:
        assert parse_status(build(packet)).description == value.strip(" \t\r\n")
