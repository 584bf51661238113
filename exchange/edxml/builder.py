"""Serialise the edXML model to bytes in exactly the shape of the official samples.

A hand-written serializer: ElementTree cannot bind one URI both as the default namespace (root,
``AttachmentEncoded``) and as the ``edXML:`` prefix (everything under the envelope), which is what the
samples do. The prefix is declared on ``edXML:edXMLEnvelope`` and again on each
``edXML:ContentTransferEncoded``, which lies outside the envelope.

Which optional elements are written:
- always: From/To with all 8 children, DocumentId, Code, PromulgationInfo/Place, DocumentType,
  Subject, Content, SignerInfo, OtherInfo (Priority, SphereOfPromulgation, TyperNotation, Direction),
  SteeringType, TraceHeaderList (the axis appends to it, so it exists even without hops) and the
  manifest (even without attachments, as in a revoke packet);
- only when set: PromulgationDate, DueDate, PromulgationAmount, PageAmount, Appendixes, ResponseFor,
  ToPlaces, Bussiness (and inside it StaffInfo, BussinessDocumentInfo, ReplacementInfoList),
  Signature, AttachmentEncoded.
Element orders follow the samples even where they disagree: From in a status packet lists OrganName
before OrganizationInCharge, and StaffInfo lists Email before Mobile inside Bussiness but Mobile before
Email in a status packet.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import fromstring as safe_fromstring  # type: ignore[import-untyped]

from exchange import organ_id
from exchange.edxml.model import (
    NS,
    Attachment,
    Business,
    DocumentPacket,
    Organ,
    ResponseFor,
    StaffInfo,
    StatusPacket,
    Trace,
)
from exchange.errors import PacketError

XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
# Vietnam has no daylight saving: aware timestamps are written in its local time.
VIETNAM = timezone(timedelta(hours=7))
# Characters XML 1.0 cannot carry at all (not even as character references).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                               "\n": "&#10;", "\t": "&#9;"})
_STATUS_CODE = re.compile(r"[0-9]{2}\Z")
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_MAX_FOREIGN_DEPTH = 64


def escape(text: str) -> str:
    """Escape element text; a CR becomes ``&#13;`` so that parsing does not fold it into LF."""
    check_chars(text)
    return text.translate(_ESCAPES)


def escape_attr(text: str) -> str:
    """Escape a double-quoted attribute value (whitespace as references: attribute normalisation)."""
    check_chars(text)
    return text.translate(_ATTR_ESCAPES)


def check_chars(text: str) -> None:
    """Refuse characters that XML 1.0 cannot carry (most C0 controls, lone surrogates, U+FFFE/F)."""
    bad = _NOT_XML_CHAR.search(text)
    if bad:
        raise PacketError("invalid-value", f"character U+{ord(bad.group()):04X} cannot be carried in XML 1.0")


def format_date(value: date) -> str:
    """``yyyy/MM/dd``."""
    return f"{value.year:04d}/{value.month:02d}/{value.day:02d}"


def format_timestamp(value: datetime) -> str:
    """``yyyy/MM/dd HH:mm:ss`` in local time; aware values are converted to Vietnam time first.
    Sub-second precision is dropped (the format has none)."""
    if value.tzinfo is not None:
        value = value.astimezone(VIETNAM).replace(tzinfo=None)
    return f"{format_date(value)} {value.hour:02d}:{value.minute:02d}:{value.second:02d}"


class _Writer:
    """Indented output; ``leaf`` and ``open``/``close`` take the qualified name as written."""

    def __init__(self) -> None:
        self.parts: list[str] = [XML_DECLARATION]
        self.depth = 0

    def open(self, name: str, attrs: str = "") -> None:
        self.parts.append(f"{'  ' * self.depth}<{name}{attrs}>\n")
        self.depth += 1

    def close(self, name: str) -> None:
        self.depth -= 1
        self.parts.append(f"{'  ' * self.depth}</{name}>\n")

    def leaf(self, name: str, text: str, attrs: str = "") -> None:
        self.parts.append(f"{'  ' * self.depth}<{name}{attrs}>{escape(text)}</{name}>\n")

    def raw(self, text: str) -> None:
        self.parts.append(f"{'  ' * self.depth}{text}\n")

    def data(self) -> bytes:
        return "".join(self.parts).encode("utf-8")


def _e(name: str) -> str:
    return f"edXML:{name}"


def _organ(w: _Writer, tag: str, organ: Organ, *, status_order: bool = False) -> None:
    names = [("OrganizationInCharge", organ.organization_in_charge), ("OrganName", organ.organ_name)]
    if status_order:
        names.reverse()
    w.open(_e(tag))
    for name, value in [("OrganId", organ.organ_id), *names, ("OrganAdd", organ.organ_add),
                        ("Email", organ.email), ("Telephone", organ.telephone), ("Fax", organ.fax),
                        ("Website", organ.website)]:
        w.leaf(_e(name), value)
    w.close(_e(tag))


def _response_for(w: _Writer, response: ResponseFor) -> None:
    w.open(_e("ResponseFor"))
    w.leaf(_e("OrganId"), response.organ_id)
    w.leaf(_e("Code"), response.code)
    if response.promulgation_date is not None:
        w.leaf(_e("PromulgationDate"), format_date(response.promulgation_date))
    w.leaf(_e("DocumentId"), response.document_id)
    w.close(_e("ResponseFor"))


def _staff(w: _Writer, staff: StaffInfo, *, mobile_first: bool) -> None:
    contact = [("Mobile", staff.mobile), ("Email", staff.email)]
    if not mobile_first:
        contact.reverse()
    w.open(_e("StaffInfo"))
    for name, value in [("Department", staff.department), ("Staff", staff.staff), *contact]:
        w.leaf(_e(name), value)
    w.close(_e("StaffInfo"))


def trace_elements(trace: Trace, prefix: str) -> Iterator[str]:
    """The lines of one ``TraceHeader`` with ``prefix`` (``"edXML:"`` or ``""``), unindented."""
    yield f"<{prefix}TraceHeader>"
    yield f"  <{prefix}OrganId>{escape(trace.organ_id)}</{prefix}OrganId>"
    yield f"  <{prefix}Timestamp>{format_timestamp(trace.timestamp)}</{prefix}Timestamp>"
    yield f"</{prefix}TraceHeader>"


def _business(w: _Writer, business: Business) -> None:
    w.open(_e("Bussiness"))
    w.leaf(_e("DocumentId"), business.document_id)
    w.leaf(_e("BussinessDocType"), str(int(business.doc_type)))
    w.leaf(_e("BussinessDocReason"), business.reason)
    w.leaf(_e("Paper"), "1" if business.paper else "0")
    if business.staff is not None:
        _staff(w, business.staff, mobile_first=False)
    if business.update is not None:
        w.open(_e("BussinessDocumentInfo"))
        w.leaf(_e("DocumentInfo"), business.update.document_info)
        w.leaf(_e("DocumentReceiver"), business.update.document_receiver)
        if business.update.receivers:
            w.open(_e("ReceiverList"))
            for receiver in business.update.receivers:
                w.open(_e("Receiver"))
                w.leaf(_e("OrganId"), receiver.organ_id)
                w.leaf(_e("ReceiverType"), str(int(receiver.receiver_type)))
                w.close(_e("Receiver"))
            w.close(_e("ReceiverList"))
        w.close(_e("BussinessDocumentInfo"))
    if business.replacements:
        w.open(_e("ReplacementInfoList"))
        for replacement in business.replacements:
            w.open(_e("ReplacementInfo"))
            w.leaf(_e("DocumentId"), replacement.document_id)
            w.open(_e("OrganIdList"))
            for organ in replacement.organ_ids:
                w.leaf(_e("OrganId"), organ)
            w.close(_e("OrganIdList"))
            w.close(_e("ReplacementInfo"))
        w.close(_e("ReplacementInfoList"))
    w.close(_e("Bussiness"))


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        uri, _, local = tag[1:].partition("}")
        return uri, local
    return "", tag


def serialize_element(elem: Element, default_ns: str) -> str:
    """Canonical text of a parsed foreign subtree (the Signature), for a place where ``default_ns`` is
    the default namespace: unprefixed names, ``xmlns`` where the namespace changes, generated
    prefixes for namespaced attributes; text and inner whitespace kept, comments are already gone."""
    out: list[str] = []
    _serialize(elem, default_ns, out, 0)
    return "".join(out)


def _serialize(elem: Element, default_ns: str, out: list[str], depth: int) -> None:
    if depth > _MAX_FOREIGN_DEPTH:  # recursion here must not be an attacker's lever
        raise PacketError("invalid-value", f"Signature is nested deeper than {_MAX_FOREIGN_DEPTH} levels")
    uri, local = _split(elem.tag)
    decls, attrs = "", ""
    if uri != default_ns:
        decls, default_ns = f' xmlns="{escape_attr(uri)}"', uri
    prefixes: dict[str, str] = {}
    for key, value in elem.attrib.items():
        a_uri, a_local = _split(key)
        if a_uri == _XML_NS:
            a_local = f"xml:{a_local}"
        elif a_uri:
            if a_uri not in prefixes:
                prefixes[a_uri] = f"ns{len(prefixes)}"
                decls += f' xmlns:{prefixes[a_uri]}="{escape_attr(a_uri)}"'
            a_local = f"{prefixes[a_uri]}:{a_local}"
        attrs += f' {a_local}="{escape_attr(value)}"'
    if elem.text is None and not len(elem):
        out.append(f"<{local}{decls}{attrs} />")
    else:
        out.append(f"<{local}{decls}{attrs}>{escape(elem.text or '')}")
        for child in elem:
            _serialize(child, default_ns, out, depth + 1)
            out.append(escape(child.tail or ""))
        out.append(f"</{local}>")


def check_signature_xml(signature_xml: str) -> None:
    """Refuse a ``signature_xml`` that is not exactly one well-formed element named ``Signature``
    (it is written verbatim: anything else would corrupt the packet)."""
    check_chars(signature_xml)
    wrapped = f'<w xmlns="{NS}" xmlns:edXML="{NS}">{signature_xml}</w>'.encode()
    try:
        root = safe_fromstring(wrapped, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except Exception as exc:  # any parser or defusedxml error means "not a clean element"
        raise PacketError("invalid-value", f"signature_xml is not a well-formed XML element: {exc}") from exc
    children = list(root)
    stray = (root.text or "").strip() or any((child.tail or "").strip() for child in children)
    if len(children) != 1 or stray or children[0].tag.rpartition("}")[2] != "Signature":
        raise PacketError("invalid-value", "signature_xml must be exactly one Signature element")


def _check_organ_id(what: str, value: str) -> None:
    try:
        organ_id.lenient(value)
    except organ_id.InvalidOrganId as exc:
        raise PacketError("invalid-value", f"{what} OrganId: {exc}") from exc


def _attachments(w: _Writer, attachments: tuple[Attachment, ...]) -> None:
    w.open("AttachmentEncoded")
    for attachment in attachments:
        w.open("Attachment")
        w.leaf("ContentId", f"cid:{attachment.content_id}")
        w.leaf("AttachmentName", attachment.name)
        w.leaf("Description", attachment.description)
        w.leaf("ContentType", attachment.content_type)
        # One line, as in the sample; ASCII only, so no escaping is needed.
        w.raw(f'<edXML:ContentTransferEncoded xmlns:edXML="{NS}">'
              f"{base64.b64encode(attachment.data).decode('ascii')}</edXML:ContentTransferEncoded>")
        w.close("Attachment")
    w.close("AttachmentEncoded")


def _check_document(packet: DocumentPacket) -> None:
    # Refuse here what parse() would refuse, so that a built packet always parses back.
    _check_organ_id("sender", packet.sender.organ_id)
    if not packet.recipients:
        raise PacketError("missing-element", "a document packet needs at least one recipient (To)")
    for number, recipient in enumerate(packet.recipients, 1):
        _check_organ_id(f"recipient {number}", recipient.organ_id)
    if not packet.document_id.strip():
        raise PacketError("missing-element", "DocumentId is empty")
    seen: set[str] = set()
    for attachment in packet.attachments:
        if not attachment.content_id or attachment.content_id in seen:
            raise PacketError("invalid-value", f"attachment content id {attachment.content_id!r} is empty or repeated")
        seen.add(attachment.content_id)
    if packet.signature_xml:
        check_signature_xml(packet.signature_xml)


def _message_header(w: _Writer, p: DocumentPacket) -> None:
    w.open(_e("MessageHeader"))
    _organ(w, "From", p.sender)
    for recipient in p.recipients:
        _organ(w, "To", recipient)
    w.leaf(_e("DocumentId"), p.document_id)
    w.open(_e("Code"))
    w.leaf(_e("CodeNumber"), p.code.number)
    w.leaf(_e("CodeNotation"), p.code.notation)
    w.close(_e("Code"))
    w.open(_e("PromulgationInfo"))
    w.leaf(_e("Place"), p.promulgation.place)
    if p.promulgation.date is not None:
        w.leaf(_e("PromulgationDate"), format_date(p.promulgation.date))
    w.close(_e("PromulgationInfo"))
    w.open(_e("DocumentType"))
    w.leaf(_e("Type"), str(int(p.document_type.type)))
    w.leaf(_e("TypeDetail"), str(int(p.document_type.detail)))
    w.leaf(_e("TypeName"), p.document_type.name)
    w.close(_e("DocumentType"))
    w.leaf(_e("Subject"), p.subject)
    w.leaf(_e("Content"), p.content)
    w.open(_e("SignerInfo"))
    w.leaf(_e("Competence"), p.signer.competence)
    w.leaf(_e("Position"), p.signer.position)
    w.leaf(_e("FullName"), p.signer.full_name)
    w.close(_e("SignerInfo"))
    if p.due_date is not None:
        w.leaf(_e("DueDate"), format_date(p.due_date))
    other = p.other
    w.open(_e("OtherInfo"))
    w.leaf(_e("Priority"), str(int(other.priority)))
    w.leaf(_e("SphereOfPromulgation"), other.sphere_of_promulgation)
    w.leaf(_e("TyperNotation"), other.typer_notation)
    if other.promulgation_amount is not None:
        w.leaf(_e("PromulgationAmount"), str(int(other.promulgation_amount)))
    if other.page_amount is not None:
        w.leaf(_e("PageAmount"), str(int(other.page_amount)))
    w.leaf(_e("Direction"), "true" if other.direction else "false")
    if other.appendixes:
        w.open(_e("Appendixes"))
        for appendix in other.appendixes:
            w.leaf(_e("Appendix"), appendix)
        w.close(_e("Appendixes"))
    w.close(_e("OtherInfo"))
    for response in p.response_for:
        _response_for(w, response)
    w.leaf(_e("SteeringType"), str(int(p.steering_type)))
    if p.to_places:
        w.open(_e("ToPlaces"))
        for place in p.to_places:
            w.leaf(_e("Place"), place)
        w.close(_e("ToPlaces"))
    w.close(_e("MessageHeader"))


def _build_document(p: DocumentPacket) -> bytes:
    _check_document(p)
    w = _Writer()
    w.open("edXML", f' xmlns="{NS}"')
    w.open(_e("edXMLEnvelope"), f' xmlns:edXML="{NS}"')
    w.open(_e("edXMLHeader"))
    _message_header(w, p)
    w.open(_e("TraceHeaderList"))
    for trace in p.traces:
        for line in trace_elements(trace, "edXML:"):
            w.raw(line)
    if p.business is not None:
        _business(w, p.business)
    w.close(_e("TraceHeaderList"))
    if p.signature_xml:
        # Verbatim: unprefixed names inside it fall in the root's default namespace, as in the sample.
        w.raw(p.signature_xml)
    w.close(_e("edXMLHeader"))
    w.open(_e("edXMLBody"))
    w.open(_e("edXMLManifest"), ' version="1.0"')
    for attachment in p.attachments:
        w.open(_e("Reference"))
        w.leaf(_e("ContentId"), f"cid:{attachment.content_id}")
        w.leaf(_e("ContentType"), attachment.content_type)
        w.leaf(_e("Description"), attachment.description)
        w.leaf(_e("AttachmentName"), attachment.name)
        w.close(_e("Reference"))
    w.close(_e("edXMLManifest"))
    w.close(_e("edXMLBody"))
    w.close(_e("edXMLEnvelope"))
    if p.attachments:
        _attachments(w, p.attachments)
    w.close("edXML")
    return w.data()


def _build_status(p: StatusPacket) -> bytes:
    _check_organ_id("sender", p.sender.organ_id)
    if not _STATUS_CODE.match(p.status_code):
        raise PacketError("invalid-value", f"StatusCode must be two digits, not {p.status_code!r}")
    w = _Writer()
    w.open("edXML", f' xmlns="{NS}"')
    w.open(_e("edXMLEnvelope"), f' xmlns:edXML="{NS}"')
    w.open(_e("edXMLHeader"))
    w.open(_e("MessageHeader"))
    _organ(w, "From", p.sender, status_order=True)
    _response_for(w, p.response_for)
    _staff(w, p.staff, mobile_first=True)
    w.leaf(_e("StatusCode"), p.status_code)
    w.leaf(_e("Description"), p.description)
    w.leaf(_e("Timestamp"), format_timestamp(p.timestamp))
    w.close(_e("MessageHeader"))
    w.close(_e("edXMLHeader"))
    w.close(_e("edXMLEnvelope"))
    w.close("edXML")
    return w.data()


def build(packet: DocumentPacket | StatusPacket) -> bytes:
    """Serialise ``packet`` to UTF-8 edXML in the official samples' shape.

    Raises :class:`PacketError` (``invalid-value``) for text XML 1.0 cannot carry, a malformed
    ``signature_xml``, repeated attachment content ids, an unusable OrganId or StatusCode, and
    (``missing-element``) for a document packet without recipients or DocumentId. Field limits and
    strict organ codes are :func:`exchange.edxml.rules.validate_for_sending`'s business.
    """
    if isinstance(packet, StatusPacket):
        return _build_status(packet)
    return _build_document(packet)
