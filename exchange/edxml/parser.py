"""Parse edXML packets safely, and append a trace hop as the axis does in transit.

Safety first: the size is checked before any parsing, and defusedxml refuses every DTD, entity
declaration and external reference (billion laughs, XXE). Elements are matched by namespace and local
name (the edXML namespace, or no namespace from sloppy senders); unknown elements are ignored and
missing optional ones tolerated.

Leaf texts are stripped of surrounding XML whitespace (space, tab, CR, LF), so ``parse(build(x)) == x``
holds for packets whose texts have none, whose timestamps have no sub-second part and whose
``signature_xml`` is in the canonical form this parser produces (re-serialised from the tree: same
elements, attributes and inner whitespace, comments dropped).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import replace
from datetime import date, datetime
from enum import IntEnum
from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.parsers import expat

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring as safe_fromstring  # type: ignore[import-untyped]

from exchange import organ_id
from exchange.edxml.builder import VIETNAM, build, serialize_element, trace_elements
from exchange.edxml.model import (
    NS,
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
)
from exchange.errors import PacketError

MAX_PACKET_BYTES = 64 * 1024 * 1024
MAX_ATTACHMENTS = 200
MAX_ATTACHMENT_BYTES = 50 * 1024 * 1024

_ROOTS = {f"{{{NS}}}edXML", f"{{{NS}}}EdXML", f"{{{NS}}}edXMLEnvelope"}
_XML_SPACE = " \t\r\n"
_TIME = r"(?:[ T](\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?)?"
_YMD = re.compile(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})" + _TIME + r"\Z", re.ASCII)
_DMY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})" + _TIME + r"\Z", re.ASCII)
_STATUS_CODE = re.compile(r"[0-9]{2}\Z")
_INT = re.compile(r"[+-]?[0-9]{1,18}\Z")  # bounded: int() of thousands of digits raises, and is slow


# ---- element access ----------------------------------------------------------------------------

def _is(elem: Element, local: str) -> bool:
    return elem.tag in (f"{{{NS}}}{local}", local)


def _children(parent: Element | None, local: str) -> list[Element]:
    return [] if parent is None else [child for child in parent if _is(child, local)]


def _child(parent: Element | None, *locals_: str) -> Element | None:
    for local in locals_:
        found = _children(parent, local)
        if found:
            return found[0]
    return None


def _required(parent: Element | None, local: str, where: str) -> Element:
    found = _child(parent, local)
    if found is None:
        raise PacketError("missing-element", f"{where} has no {local}")
    return found


def _text(parent: Element | None, local: str) -> str:
    found = _child(parent, local)
    return "" if found is None else (found.text or "").strip(_XML_SPACE)


def _int(parent: Element | None, local: str, default: int) -> int:
    text = _text(parent, local)
    if not text:
        return default
    if not _INT.match(text):
        raise PacketError("invalid-value", f"{local} is not an integer (at most 18 digits): {text[:40]!r}")
    return int(text)


def _optional_int(parent: Element | None, local: str) -> int | None:
    return _int(parent, local, 0) if _text(parent, local) else None


def _bool(parent: Element | None, local: str) -> bool:
    text = _text(parent, local).lower()
    if text in ("", "0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise PacketError("invalid-value", f"{local} is not a boolean: {text[:40]!r}")


def _match_time(text: str, local: str) -> tuple[int, int, int, int, int, int]:
    """(year, month, day, hour, minute, second) from ``yyyy/MM/dd``, ``dd/MM/yyyy`` (``-`` too for the
    ISO order), each with an optional `` HH:mm[:ss]``."""
    ymd = _YMD.match(text)
    dmy = None if ymd else _DMY.match(text)
    if ymd:
        year, month, day = ymd.group(1, 2, 3)
        rest = ymd.group(4, 5, 6)
    elif dmy:
        day, month, year = dmy.group(1, 2, 3)
        rest = dmy.group(4, 5, 6)
    else:
        raise PacketError("invalid-value", f"{local} is not a date (yyyy/MM/dd): {text[:40]!r}")
    hour, minute, second = (int(part or 0) for part in rest)
    return int(year), int(month), int(day), hour, minute, second


def _date(parent: Element | None, local: str) -> date | None:
    text = _text(parent, local)
    if not text:
        return None
    year, month, day, *_ = _match_time(text, local)
    try:
        return date(year, month, day)
    except ValueError as exc:
        raise PacketError("invalid-value", f"{local} is not a valid date: {text[:40]!r}") from exc


def _timestamp(parent: Element | None, local: str, where: str) -> datetime:
    text = _text(parent, local)
    if not text:
        raise PacketError("missing-element", f"{where} has no {local}")
    try:
        return datetime(*_match_time(text, local))
    except PacketError:
        pass
    except ValueError as exc:
        raise PacketError("invalid-value", f"{local} is not a valid timestamp: {text[:40]!r}") from exc
    try:  # ISO 8601 with a zone, e.g. 2024-05-01T10:00:00+07:00: local time it is.
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise PacketError("invalid-value", f"{local} is not a timestamp (yyyy/MM/dd HH:mm:ss): {text[:40]!r}") from exc
    return parsed.astimezone(VIETNAM).replace(tzinfo=None) if parsed.tzinfo else parsed


# ---- parsing -----------------------------------------------------------------------------------

def _load(data: bytes, max_bytes: int) -> Element:
    if len(data) > max_bytes:
        raise PacketError("too-large", f"packet of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        root: Element = safe_fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise PacketError("xml-forbidden", f"DTDs, entities and external references are refused: {exc!r}") from exc
    except (ParseError, ValueError, LookupError) as exc:
        raise PacketError("not-xml", f"not well-formed XML: {exc}") from exc
    if root.tag not in _ROOTS:
        raise PacketError("wrong-namespace", f"root element {root.tag!r} is not {{{NS}}}edXML")
    return root


def _organ(elem: Element, where: str) -> Organ:
    code = _text(elem, "OrganId")
    if not code:
        raise PacketError("missing-element", f"{where} has no OrganId")
    try:
        organ_id.lenient(code)
    except organ_id.InvalidOrganId as exc:
        raise PacketError("invalid-value", f"{where} OrganId: {exc}") from exc
    return Organ(code, _text(elem, "OrganizationInCharge"), _text(elem, "OrganName"), _text(elem, "OrganAdd"),
                 _text(elem, "Email"), _text(elem, "Telephone"), _text(elem, "Fax"), _text(elem, "Website"))


def _response_for(elem: Element) -> ResponseFor:
    return ResponseFor(_text(elem, "OrganId"), _text(elem, "Code"), _date(elem, "PromulgationDate"),
                       _text(elem, "DocumentId"))


def _staff(elem: Element | None) -> StaffInfo | None:
    if elem is None:
        return None
    return StaffInfo(_text(elem, "Department"), _text(elem, "Staff"), _text(elem, "Mobile"), _text(elem, "Email"))


def _enum(value: int, kind: type[IntEnum]) -> int:
    # The enum member when the value is known; other values are kept (validated on send only).
    try:
        return kind(value)
    except ValueError:
        return value


def _business(elem: Element | None) -> Business | None:
    if elem is None:
        return None
    try:
        doc_type = BusinessType(_int(elem, "BussinessDocType", 0))
    except ValueError as exc:
        raise PacketError("invalid-value", f"BussinessDocType must be 0..3: {exc}") from exc
    info = _child(elem, "BussinessDocumentInfo")
    update = None
    if info is not None:
        receivers = tuple(Receiver(_text(r, "OrganId"), _int(r, "ReceiverType", 0))
                          for r in _children(_child(info, "ReceiverList"), "Receiver"))
        update = UpdateInfo(_text(info, "DocumentInfo"), _text(info, "DocumentReceiver"), receivers)
    replacements = tuple(
        Replacement(_text(r, "DocumentId"),
                    tuple((o.text or "").strip(_XML_SPACE) for o in _children(_child(r, "OrganIdList"), "OrganId")))
        for r in _children(_child(elem, "ReplacementInfoList"), "ReplacementInfo"))
    return Business(_text(elem, "DocumentId"), doc_type, _text(elem, "BussinessDocReason"),
                    _bool(elem, "Paper"), _staff(_child(elem, "StaffInfo")), update, replacements)


def _content_id(elem: Element) -> str:
    cid = _text(elem, "ContentId")
    return cid[4:] if cid[:4].lower() == "cid:" else cid


def _attachments(root: Element, envelope: Element, max_attachments: int, max_bytes: int) -> tuple[Attachment, ...]:
    encoded = _child(root, "AttachmentEncoded")
    if encoded is None:  # the edXMLEnvelope root variant
        encoded = _child(envelope, "AttachmentEncoded")
    items = _children(encoded, "Attachment")
    if len(items) > max_attachments:
        raise PacketError("too-large", f"{len(items)} attachments exceed the limit of {max_attachments}")
    references = {_content_id(ref): ref
                  for ref in _children(_child(_child(envelope, "edXMLBody"), "edXMLManifest"), "Reference")}
    out: list[Attachment] = []
    for item in items:
        cid = _text(item, "ContentId")
        content_id = _content_id(item)
        ref = references.pop(content_id, None)
        if not content_id or any(a.content_id == content_id for a in out):
            raise PacketError("invalid-value", f"attachment ContentId {cid!r} is empty or repeated")
        payload = _required(item, "ContentTransferEncoded", f"attachment {cid}")
        text = "".join((payload.text or "").split())  # MIME-style line breaks are common
        size = len(text) * 3 // 4 - text[-2:].count("=")
        if size > max_bytes:
            raise PacketError("too-large", f"attachment {cid} of {size} bytes exceeds the limit of {max_bytes}")
        try:
            # Strict: only the alphabet, correct padding, nothing after it (strict mode still lets
            # "AAAA====" through).
            if len(text) - len(text.rstrip("=")) > 2:
                raise binascii.Error("excess padding")
            data = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as exc:
            raise PacketError("invalid-value", f"attachment {cid} is not valid base64: {exc}") from exc
        # The manifest's Reference fills in what the Attachment itself leaves out.
        out.append(Attachment(content_id, _text(item, "AttachmentName") or _text(ref, "AttachmentName"),
                              _text(item, "ContentType") or _text(ref, "ContentType"), data,
                              _text(item, "Description") or _text(ref, "Description")))
    if references:
        # A manifest entry without its file: the document arrived incomplete.
        raise PacketError("missing-element", f"no attachment for manifest reference(s) {sorted(references)}")
    return tuple(out)


def _document(root: Element, envelope: Element, header: Element, mh: Element, max_attachments: int,
              max_attachment_bytes: int) -> DocumentPacket:
    sender = _organ(_required(mh, "From", "MessageHeader"), "From")
    tos = _children(mh, "To")
    if not tos:
        raise PacketError("missing-element", "MessageHeader has no To")
    recipients = tuple(_organ(to, f"To {number}") for number, to in enumerate(tos, 1))
    document_id = _text(mh, "DocumentId")
    if not document_id:
        raise PacketError("missing-element", "MessageHeader has no DocumentId")
    code, promulgation, doctype = _child(mh, "Code"), _child(mh, "PromulgationInfo"), _child(mh, "DocumentType")
    signer, other = _child(mh, "SignerInfo"), _child(mh, "OtherInfo")
    trace_list = _child(header, "TraceHeaderList")
    traces = tuple(Trace(_text(t, "OrganId"), _timestamp(t, "Timestamp", "TraceHeader"))
                   for t in _children(trace_list, "TraceHeader"))
    # The Signature in any namespace (the samples' one inherits the edXML default namespace).
    signature = next((child for child in header if child.tag.rpartition("}")[2] == "Signature"), None)
    signature_xml = "" if signature is None else serialize_element(signature, NS)
    return DocumentPacket(
        sender=sender,
        recipients=recipients,
        document_id=document_id,
        code=Code(_text(code, "CodeNumber"), _text(code, "CodeNotation")),
        promulgation=Promulgation(_text(promulgation, "Place"), _date(promulgation, "PromulgationDate")),
        document_type=DocumentType(_int(doctype, "Type", 1), _int(doctype, "TypeDetail", 0),
                                   _text(doctype, "TypeName")),
        subject=_text(mh, "Subject"),
        content=_text(mh, "Content"),
        signer=SignerInfo(_text(signer, "Competence"), _text(signer, "Position"), _text(signer, "FullName")),
        due_date=_date(mh, "DueDate"),
        other=OtherInfo(
            priority=_enum(_int(other, "Priority", 0), Priority),
            sphere_of_promulgation=_text(other, "SphereOfPromulgation"),
            typer_notation=_text(other, "TyperNotation"),
            promulgation_amount=_optional_int(other, "PromulgationAmount"),
            page_amount=_optional_int(other, "PageAmount"),
            direction=_bool(other, "Direction"),
            appendixes=tuple((a.text or "").strip(_XML_SPACE)
                             for a in _children(_child(other, "Appendixes"), "Appendix")),
        ),
        response_for=tuple(_response_for(r) for r in _children(mh, "ResponseFor")),
        steering_type=_enum(_int(mh, "SteeringType", 0), SteeringType),
        to_places=tuple((p.text or "").strip(_XML_SPACE) for p in _children(_child(mh, "ToPlaces"), "Place")),
        traces=traces,
        business=_business(_child(trace_list, "Bussiness", "Business")),
        attachments=_attachments(root, envelope, max_attachments, max_attachment_bytes),
        signature_xml=signature_xml,
    )


def _status(mh: Element) -> StatusPacket:
    code = _text(mh, "StatusCode")
    if len(code) == 1:
        code = "0" + code  # some senders drop the leading zero
    if not _STATUS_CODE.match(code):
        # Unknown two-digit codes are kept; anything else cannot drive the document's state.
        raise PacketError("invalid-value", f"StatusCode is not a two-digit code: {code[:40]!r}")
    return StatusPacket(
        sender=_organ(_required(mh, "From", "MessageHeader"), "From"),
        response_for=_response_for(_required(mh, "ResponseFor", "status MessageHeader")),
        status_code=code,
        timestamp=_timestamp(mh, "Timestamp", "status MessageHeader"),
        description=_text(mh, "Description"),
        staff=_staff(_child(mh, "StaffInfo")) or StaffInfo(),
    )


def parse(data: bytes, *, max_bytes: int = MAX_PACKET_BYTES, max_attachments: int = MAX_ATTACHMENTS,
          max_attachment_bytes: int = MAX_ATTACHMENT_BYTES) -> DocumentPacket | StatusPacket:
    """Parse an edXML packet: a :class:`StatusPacket` when the MessageHeader has a StatusCode, else a
    :class:`DocumentPacket`.

    Raises :class:`PacketError` with code ``too-large`` (checked before parsing; also too many or too
    large attachments), ``xml-forbidden`` (any DOCTYPE, entity or external reference), ``not-xml``,
    ``wrong-namespace`` (root not ``edXML``/``EdXML``/``edXMLEnvelope`` in the edXML namespace),
    ``missing-element`` or ``invalid-value``.
    """
    root = _load(data, max_bytes)
    envelope = root if _is(root, "edXMLEnvelope") else _required(root, "edXMLEnvelope", "edXML")
    header = _required(envelope, "edXMLHeader", "edXMLEnvelope")
    mh = _required(header, "MessageHeader", "edXMLHeader")
    if _child(mh, "StatusCode") is not None:
        return _status(mh)
    return _document(root, envelope, header, mh, max_attachments, max_attachment_bytes)


def parse_document(data: bytes, *, max_bytes: int = MAX_PACKET_BYTES, max_attachments: int = MAX_ATTACHMENTS,
                   max_attachment_bytes: int = MAX_ATTACHMENT_BYTES) -> DocumentPacket:
    """:func:`parse`, refusing a status packet (``invalid-value``)."""
    packet = parse(data, max_bytes=max_bytes, max_attachments=max_attachments,
                   max_attachment_bytes=max_attachment_bytes)
    if not isinstance(packet, DocumentPacket):
        raise PacketError("invalid-value", "expected a document packet, got a status packet")
    return packet


def parse_status(data: bytes, *, max_bytes: int = MAX_PACKET_BYTES, max_attachments: int = MAX_ATTACHMENTS,
                 max_attachment_bytes: int = MAX_ATTACHMENT_BYTES) -> StatusPacket:
    """:func:`parse`, refusing a document packet (``invalid-value``)."""
    packet = parse(data, max_bytes=max_bytes, max_attachments=max_attachments,
                   max_attachment_bytes=max_attachment_bytes)
    if not isinstance(packet, StatusPacket):
        raise PacketError("invalid-value", "expected a status packet, got a document packet")
    return packet


# ---- with_trace --------------------------------------------------------------------------------

_DECLARED_ENCODING = re.compile(rb"<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


def _insertion_point(data: bytes) -> tuple[int, str, bool] | None:
    """Where the new TraceHeader goes: (byte offset, prefix of TraceHeaderList, before Bussiness?).

    Finds the elements :func:`parse` reads (the first edXMLEnvelope, edXMLHeader, TraceHeaderList in
    the edXML namespace or none). ``None`` when bytes cannot simply be inserted: non-UTF-8 encoding,
    no or empty TraceHeaderList, or a TraceHeader after the Bussiness block (the new one must come
    last)."""
    head = data[:200].removeprefix(b"\xef\xbb\xbf")
    declared = _DECLARED_ENCODING.match(head)
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or (declared and declared.group(1).lower() not in (b"utf-8", b"utf8")):
        return None
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.namespace_prefixes = True  # names arrive as "uri local prefix" ("local" without a namespace)
    depth = 0
    found: dict[str, int] = {}  # element -> its depth while it is open
    done: set[str] = set()  # elements found and closed: later namesakes are not the ones parse reads
    state: dict[str, Any] = {}
    wanted = {"edXMLEnvelope": None, "edXMLHeader": "edXMLEnvelope", "TraceHeaderList": "edXMLHeader"}

    def start(name: str, _attrs: Any) -> None:
        nonlocal depth
        depth += 1
        parts = name.split(" ")
        uri, local = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
        ours = uri in (NS, "")
        parent = wanted.get(local, "-")
        if local == "edXMLEnvelope" and depth == 1:
            found[local] = 1
        elif ours and local not in found and local not in done and (
                (parent is None and depth == 2) or (parent and found.get(parent) == depth - 1)):
            found[local] = depth
            if local == "TraceHeaderList":
                state["prefix"] = f"{parts[2]}:" if len(parts) > 2 else ""
        elif found.get("TraceHeaderList") == depth - 1 and ours:
            if local in ("Bussiness", "Business") and "business" not in state:
                state["business"] = parser.CurrentByteIndex
            elif local == "TraceHeader" and "business" in state:
                state["late_trace"] = True

    def end(_name: str) -> None:
        nonlocal depth
        for local, at in list(found.items()):
            if at == depth:
                del found[local]
                done.add(local)
                if local == "TraceHeaderList" and "result" not in state:
                    index = parser.CurrentByteIndex
                    # For <TraceHeaderList/> expat reports the end just after the tag: nothing to
                    # insert into. (Text ending in "/>" lands here too, harmlessly: we rebuild.)
                    if data[index - 2:index] == b"/>" or state.get("late_trace"):
                        state["result"] = None
                    elif "business" in state:
                        state["result"] = (state["business"], state["prefix"], True)
                    else:
                        state["result"] = (index, state["prefix"], False)
        depth -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.Parse(data, True)
    result: tuple[int, str, bool] | None = state.get("result")
    return result


def with_trace(data: bytes, trace: Trace, *, max_bytes: int = MAX_PACKET_BYTES) -> bytes:
    """Append ``trace`` after the existing TraceHeaders of a document packet, as the axis does in
    transit; a status packet is returned unchanged.

    The packet is first parsed (so everything :func:`parse` refuses is refused here). The TraceHeader
    is then inserted into the original bytes, which keeps everything else byte for byte (unknown
    elements, the Signature as sent); packets where that is not possible are rebuilt from the model.
    """
    packet = parse(data, max_bytes=max_bytes)
    if isinstance(packet, StatusPacket):
        return data
    spot = _insertion_point(data)
    if spot is None:
        return build(replace(packet, traces=(*packet.traces, trace)))
    offset, prefix, before_business = spot
    line_start = data.rfind(b"\n", 0, offset) + 1
    indent = data[line_start:offset].decode("ascii") if data[line_start:offset].isspace() else ""
    inner = indent if before_business else indent + "  "
    lines = list(trace_elements(trace, prefix))
    text = ("" if before_business else "  ") + f"\n{inner}".join(lines) + f"\n{indent}"
    return data[:offset] + text.encode("utf-8") + data[offset:]
