"""The external CA back end (the Government CA): CSR and form data out, issued certificate in.

For a request with ``ca = "external"`` the hsm worker generates the key, writes a PKCS#10 CSR into
the item and leaves it ``awaiting``. From there:

* :func:`export` / :func:`summary_pdf`: what the RA officer sends to the Government CA (the CSR and
  a summary of the form data: organisation, subject, profile, key, requester and approvers).
* :func:`import_issued`: the certificate the CA sends back (PEM bundle, DER, PKCS#7), accepted only
  when its public key is the HSM key's and its chain verifies up to a self-signed root (from the
  upload or the configured trust roots). Then the credential becomes active and the certificate is
  recorded; the hsm worker copies it onto the token afterwards (:mod:`signer.jobs.certificates`).

Chains are checked with pyhanko-certvalidator (RFC 5280 path validation, no fetching, no
revocation): the same validator that later judges the signatures this credential makes, so a chain
accepted here is one the verifier accepts too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
import unicodedata
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from cryptography.hazmat.primitives.serialization.pkcs7 import (
    load_der_pkcs7_certificates,
    load_pem_pkcs7_certificates,
)
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathError, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from signer import audit
from signer.authz import require_organisation, require_roles
from signer.db import after_commit
from signer.errors import Conflict, InvalidInput, NotFound
from signer.lifecycle.models import CertificateRequest, CertificateRequestItem, RequestStatus
from signer.models import Credential, CredentialStatus, Organisation, Role, User
from signer.pki.revocation import record_issued
from signer.principal import Principal
from signer.signing.errors import RequestStateConflict
from signer.signing.models import IssuedCertificate

#: Who exports CSRs and imports the Government CA's certificates.
RA_ROLES = frozenset({Role.ADMIN, Role.RA_OFFICER})
MAX_UPLOAD_BYTES = 1 << 20
MAX_UPLOAD_CERTIFICATES = 20  # a leaf and its issuers; more is not a CA's answer
SUMMARY_VERSION = 1
IMPORT_ACTION = "certificate.import_issued"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.S)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"CMS"}
_ACTION_VI = {"issue": "Cấp mới / Issue", "renew": "Gia hạn / Renew", "rekey": "Thay đổi cặp khóa / Re-key"}
# Labels for subject attributes a subject profile does not name (Vietnamese first).
_ATTRIBUTE_LABELS = {"CN": "Tên / Common name", "O": "Cơ quan / Organisation", "OU": "Đơn vị / Unit",
                     "L": "Quận/Huyện / Locality", "ST": "Tỉnh/Thành phố / Province", "C": "Quốc gia / Country",
                     "T": "Chức vụ / Title", "UID": "Mã định danh / UID", "E": "Thư điện tử / E-mail",
                     "serialNumber": "Số hiệu / Serial number"}
_SHORT_NAMES = {x509.NameOID.TITLE: "T", x509.NameOID.USER_ID: "UID", x509.NameOID.EMAIL_ADDRESS: "E",
                x509.NameOID.SERIAL_NUMBER: "serialNumber"}


class InvalidCertificate(InvalidInput):
    """The upload holds no certificate this service can read."""

    slug, title, title_vi = "invalid-certificate", "Invalid certificate", "Chứng thư số không hợp lệ"


class KeyMismatch(InvalidInput):
    """No uploaded certificate certifies the credential's HSM key."""

    slug, title, title_vi = "key-mismatch", "Certificate does not match the key", "Chứng thư số không khớp khóa"

    def __init__(self, detail: str, fingerprints: list[str]) -> None:
        super().__init__(detail)
        self.fingerprints = fingerprints  # of what was uploaded, for the audit of the refusal


class ChainInvalid(InvalidInput):
    """The certificate's chain does not verify up to a self-signed root."""

    slug, title, title_vi = "chain-invalid", "Certificate chain does not verify", "Chuỗi chứng thư không hợp lệ"

    def __init__(self, detail: str, fingerprints: list[str]) -> None:
        super().__init__(detail)
        self.fingerprints = fingerprints


# --- parsing ------------------------------------------------------------------------------------

def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex (as the registry and the audit log name it)."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _pkcs7(data: bytes, pem: bool) -> list[x509.Certificate]:
    loaded = load_pem_pkcs7_certificates(data) if pem else load_der_pkcs7_certificates(data)
    return list(loaded)


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in ``data``: a PEM bundle (CERTIFICATE and PKCS7 blocks; other blocks
    are ignored), a DER certificate, or a DER PKCS#7 (``.p7b``/``.p7c``) certificate bag.

    Raises :class:`InvalidCertificate` when nothing readable is found or a block is damaged.
    """
    if not data.strip():  # only a test: stripping DER could cut a final byte that looks like a space
        raise InvalidCertificate("Tệp rỗng / the upload is empty")
    try:
        if b"-----BEGIN" in data:
            found: list[x509.Certificate] = []
            for block in _PEM_BLOCK.finditer(data):
                label = block.group(1)
                if label in _CERT_LABELS:
                    found.append(x509.load_pem_x509_certificate(block.group(0)))
                elif label in _PKCS7_LABELS:
                    found += _pkcs7(block.group(0), pem=True)
        elif data[:1] == b"\x30":
            try:
                found = [x509.load_der_x509_certificate(data)]
            except ValueError:
                found = _pkcs7(data, pem=False)
        else:
            found = []
    except (ValueError, UnsupportedAlgorithm) as exc:
        # Never echo the input: it could be anything, including a private key pasted by mistake.
        raise InvalidCertificate("Không đọc được chứng thư số (PEM, DER hoặc PKCS#7) / could not read the "
                                 f"certificate (PEM, DER or PKCS#7): {type(exc).__name__}") from None
    if not found:
        raise InvalidCertificate("Không tìm thấy chứng thư số nào (PEM, DER hoặc PKCS#7) / no certificate "
                                 "found (PEM, DER or PKCS#7)")
    return found


def _spki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, UnsupportedAlgorithm):
        return None


def _normalised_spki(public_key_der: bytes) -> bytes:
    # Re-encode: an HSM may export EC parameters or RSA integers encoded slightly differently.
    return load_der_public_key(public_key_der).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# --- the request item ---------------------------------------------------------------------------

def load_item(session: Session, actor: Principal, request_id: str, position: int) -> CertificateRequestItem:
    """Item ``position`` of a certificate request the actor (admin or RA officer) may handle."""
    require_roles(actor, RA_ROLES, "handling certificates of the external CA")
    request = session.get(CertificateRequest, request_id)
    if request is None:
        raise NotFound("Không tìm thấy yêu cầu / certificate request not found")
    require_organisation(session, actor, request.organisation_id, "certificate request")
    item = session.scalar(select(CertificateRequestItem).where(
        CertificateRequestItem.request_id == request_id, CertificateRequestItem.position == position))
    if item is None:
        raise NotFound("Không tìm thấy mục này của yêu cầu / no such item in the request")
    return item


def _external(session: Session, item_id: str, *, lock: bool = False) -> tuple[
        CertificateRequestItem, CertificateRequest, Credential]:
    query = select(CertificateRequestItem).where(CertificateRequestItem.id == item_id)
    item = session.scalar(query.with_for_update() if lock else query)
    if item is None:
        raise NotFound("Không tìm thấy mục này của yêu cầu / no such item in the request")
    request = item.request
    if request.ca != "external":
        raise Conflict("Yêu cầu này không dùng CA bên ngoài / this request does not use the external CA")
    credential = session.get(Credential, item.credential_id) if item.credential_id else None
    if credential is None or item.csr_der is None:
        raise RequestStateConflict("Khóa và CSR chưa được tạo / the key and CSR are not generated yet")
    return item, request, credential


def csr_der(session: Session, item_id: str) -> bytes:
    """The item's PKCS#10 CSR (DER)."""
    item, _request, _credential = _external(session, item_id)
    assert item.csr_der is not None
    return item.csr_der


# --- export -------------------------------------------------------------------------------------

def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat(timespec="seconds")


def _person(session: Session, user_id: str | None) -> dict[str, Any] | None:
    user = session.get(User, user_id) if user_id else None
    return None if user is None else {"user_id": user.id, "username": user.username, "full_name": user.full_name}


def _profile_titles(session: Session, request: CertificateRequest) -> tuple[str | None, str | None, dict[str, str]]:
    """Titles of the request's certificate and subject profiles, and the subject field labels."""
    from signer.lifecycle import profiles  # the lifecycle imports the PKI, not the other way round

    cert_title = subject_title = None
    labels: dict[str, str] = {}
    try:
        if request.profile:
            cert_title = profiles.certificate_profile(session, request.profile).title
        if request.subject_profile:
            subject = profiles.subject_profile(session, request.subject_profile)
            subject_title = subject.title
            labels = {f.attribute: f.label for f in subject.fields}
    except (NotFound, InvalidInput):  # a profile renamed or removed since: the summary still works
        pass
    return cert_title, subject_title, labels


def _subject_fields(name: x509.Name, labels: dict[str, str]) -> list[dict[str, str]]:
    fields = []
    for attr in name:
        short = _SHORT_NAMES.get(attr.oid) or attr.rfc4514_attribute_name
        value = attr.value if isinstance(attr.value, str) else attr.value.hex()
        fields.append({"attribute": short, "label": labels.get(short) or _ATTRIBUTE_LABELS.get(short, short),
                       "value": unicodedata.normalize("NFC", value)})
    return fields


def export(session: Session, item_id: str) -> dict[str, Any]:
    """The summary of the form data for the Government CA (JSON-ready; UTF-8 Vietnamese kept).

    The subject comes from the CSR itself (what the CA is asked to certify); labels from the
    request's subject profile. Authorisation is the caller's (see :func:`load_item`).
    """
    item, request, credential = _external(session, item_id)
    assert item.csr_der is not None
    csr = x509.load_der_x509_csr(item.csr_der)
    organisation = session.get(Organisation, request.organisation_id)
    cert_title, subject_title, labels = _profile_titles(session, request)
    approvals = [{**(_person(session, d.user_id) or {"user_id": d.user_id}), "decided_at": _iso(d.at),
                  "comment": d.comment} for d in request.decisions if d.decision == "approve"]
    form = request.params.get("subject") if isinstance(request.params, dict) else None
    return {
        "version": SUMMARY_VERSION,
        "request": {"id": request.id, "position": item.position, "action": request.action,
                    "status": request.status, "created_at": _iso(request.created_at),
                    "decided_at": _iso(request.decided_at)},
        "organisation": {"id": request.organisation_id, "code": organisation.code if organisation else None,
                         "name": organisation.name if organisation else None},
        "subject": _subject_fields(csr.subject, labels),
        "subject_dn": csr.subject.rfc4514_string(),
        "form": form if isinstance(form, dict) else {},
        "certificate_profile": {"name": request.profile, "title": cert_title},
        "subject_profile": {"name": request.subject_profile, "title": subject_title},
        "credential": {"id": credential.id, "name": credential.name, "kind": credential.kind},
        "key": {"spec": credential.key_spec, "label": credential.hsm_key_label,
                "spki_sha256": hashlib.sha256(_normalised_spki(credential.public_key_der)).hexdigest()},
        "csr_pem": csr.public_bytes(Encoding.PEM).decode("ascii"),
        "csr_sha256": hashlib.sha256(item.csr_der).hexdigest(),
        "requester": {"ref": request.requested_by, **(_person(session, request.requester_user_id) or {})},
        "approvals": approvals,
        "generated_at": _iso(dt.datetime.now(dt.UTC)),
    }


# --- the summary as a PDF -----------------------------------------------------------------------

_A4 = (595.28, 841.89)
_MARGIN = 50.0


def _wrap(text: str, width: float, size: int) -> list[str]:
    """Break ``text`` into lines at most ``width`` points wide (words; very long words by character)."""
    from signer.signing.appearance import text_width

    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if text_width(candidate, size) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            current = ""
            for ch in word:  # a hash or a base64 run longer than a line
                if text_width(current + ch, size) > width and current:
                    lines.append(current)
                    current = ""
                current += ch
        lines.append(current)
    return lines


def _summary_lines(summary: dict[str, Any]) -> list[tuple[str, str]]:
    req, org, key = summary["request"], summary["organisation"], summary["key"]
    cert_profile, requester = summary["certificate_profile"], summary["requester"]
    rows = [
        ("Mã yêu cầu / Request", f"{req['id']} (mục / item {req['position']})"),
        ("Loại yêu cầu / Action", _ACTION_VI.get(req["action"], req["action"])),
        ("Cơ quan / Organisation", org["name"] or ""),
        ("Mã định danh (QCVN 102) / Code", org["code"] or ""),
        ("Loại chứng thư / Certificate profile", cert_profile["title"] or cert_profile["name"] or ""),
    ]
    rows += [(f["label"], f["value"]) for f in summary["subject"]]
    rows += [
        ("Thuật toán khóa / Key", key["spec"]),
        ("SHA-256 khóa công khai / SPKI SHA-256", key["spki_sha256"]),
        ("SHA-256 của CSR / CSR SHA-256", summary["csr_sha256"]),
        ("Người đề nghị / Requested by", requester.get("full_name") or requester["ref"]),
        ("Ngày đề nghị / Requested on", req["created_at"] or ""),
    ]
    for n, approval in enumerate(summary["approvals"], 1):
        who = approval.get("full_name") or approval.get("username") or approval.get("user_id", "")
        rows.append((f"Người phê duyệt {n} / Approver {n}", f"{who}, {approval['decided_at']}"))
    return rows


def summary_pdf(summary: dict[str, Any]) -> bytes:
    """A one-page A4 PDF of :func:`export`'s summary, in Liberation Serif (Vietnamese glyphs),
    through pyHanko's OpenType support: the fonts and writer the signature stamps already use.

    Content that would run past the page is scaled down to fit rather than spill onto a second page.
    """
    from pyhanko.pdf_utils import generic, layout
    from pyhanko.pdf_utils.content import PdfResources
    from pyhanko.pdf_utils.text import TextBox, TextBoxStyle
    from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter

    from signer.signing.appearance import serif_font

    width, height = _A4
    usable = width - 2 * _MARGIN
    label_width = usable * 0.42
    writer = PdfFileWriter()
    resources = PdfResources()
    top_left = layout.SimpleBoxLayoutRule(x_align=layout.AxisAlignment.ALIGN_MIN,
                                          y_align=layout.AxisAlignment.ALIGN_MAX, margins=layout.Margins.uniform(0))
    rows: list[tuple[float, list[tuple[float, float, bytes]]]] = []  # (height, [(x, height, operators)])
    engines: dict[int, Any] = {}

    class _Shared:
        """One font engine (one embedded subset) per size, however many boxes use it."""

        def __init__(self, size: int) -> None:
            self.size = size

        def create_font_engine(self, writer: Any, obj_stream: Any = None) -> Any:
            if self.size not in engines:
                engines[self.size] = serif_font(self.size).create_font_engine(writer, obj_stream)
            return engines[self.size]

    def box(text: str, size: int, leading: int, box_width: float) -> tuple[float, bytes]:
        lines = _wrap(text, box_width, size)
        style = TextBoxStyle(font=_Shared(size), font_size=size, leading=leading, text_color=(0, 0, 0),
                             border_width=0, box_layout_rule=top_left)
        tb = TextBox(style, writer, resources=resources, font_name=f"F{size}",
                     box=layout.BoxConstraints(width=box_width, height=len(lines) * leading + 4))
        tb.content = "\n".join(lines)
        return len(lines) * leading + 4, tb.render()

    def full(text: str, size: int, leading: int, gap: float = 0) -> None:
        h, ops = box(text, size, leading, usable)
        rows.append((h + gap, [(0, h, ops)]))

    full("PHIẾU ĐỀ NGHỊ CẤP CHỨNG THƯ CHỮ KÝ SỐ", 14, 18)
    full("Request for a digital signature certificate (summary for the Government CA)", 9, 12, gap=8)
    for label, value in _summary_lines(summary):
        lh, lops = box(label + ":", 10, 13, label_width - 6)
        vh, vops = box(str(value), 10, 13, usable - label_width)
        rows.append((max(lh, vh), [(0, lh, lops), (label_width, vh, vops)]))
    full("Yêu cầu chứng thực (CSR) / Certificate signing request:", 10, 13, gap=2)
    full(summary["csr_pem"].strip(), 7, 9)

    total = sum(h for h, _ in rows)
    scale = min(1.0, (height - 2 * _MARGIN) / total)
    stream = [b"q 1 0 0 1 %g %g cm %g 0 0 %g 0 0 cm" % (_MARGIN, height - _MARGIN, scale, scale)]
    y = 0.0
    for h, cells in rows:
        for x, cell_height, ops in cells:  # each box hangs from the top of its row
            stream.append(b"q 1 0 0 1 %g %g cm %s Q" % (x, y - cell_height, ops))
        y -= h
    stream.append(b"Q")
    contents = writer.add_object(generic.StreamObject(stream_data=b"\n".join(stream)))
    writer.insert_page(PageObject(contents=contents, media_box=(0, 0, width, height),
                                  resources=resources.as_pdf_object()))
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


# --- import -------------------------------------------------------------------------------------

def _validate_chain(session: Session, leaf: x509.Certificate, others: list[x509.Certificate],
                    trust_roots_file: Path | None, now: dt.datetime, fingerprints: list[str]) -> tuple[
        list[x509.Certificate], bool]:
    """The issuers of ``leaf`` up to its root (leaf excluded) and whether that root is a configured
    trust root (rather than one that came with the upload). Raises :class:`ChainInvalid`."""
    from signer.signing.material import trust_roots

    configured = trust_roots(session, trust_roots_file)
    configured_sha = {hashlib.sha256(c.dump()).hexdigest() for c in configured}
    uploaded_roots = [c for c in others if _self_signed(c)]
    intermediates = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in others
                     if c not in uploaded_roots]
    roots = configured + [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in uploaded_roots]
    context = ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail", moment=now)
    validator = CertificateValidator(asn1_x509.Certificate.load(leaf.public_bytes(Encoding.DER)),
                                     intermediate_certs=intermediates, validation_context=context)
    try:
        path = asyncio.run(validator.async_validate_path())
    except (PathError, ValidationError) as exc:
        raise ChainInvalid("Chuỗi chứng thư không kiểm tra được đến một CA gốc tự ký / the chain does not verify "
                           f"up to a self-signed root: {exc}", fingerprints) from None
    chain = [x509.load_der_x509_certificate(c.dump()) for c in path.iter_certs(include_root=True)]
    issuers = list(reversed(chain[:-1]))  # nearest issuer first, root last
    # The validator trusts its anchors as given: check the root's own dates and CA flag too.
    root = issuers[-1]
    if not (root.not_valid_before_utc <= now <= root.not_valid_after_utc):
        raise ChainInvalid("CA gốc đã hết hạn hoặc chưa có hiệu lực / the root CA certificate is not valid now",
                           fingerprints)
    if not _is_ca(root):
        raise ChainInvalid("Chứng thư gốc không phải là CA / the root certificate is not a CA", fingerprints)
    return issuers, fingerprint(root) in configured_sha


def _store_after_commit(session: Session, credential_id: str) -> None:
    """Queue the hsm job that copies the certificate onto the token, once the import commits.

    The token copy is for other PKCS#11 applications only (signing reads the database), so a job
    lost with Redis loses nothing that matters; re-running it is harmless.
    """
    from signer.jobs.certificates import store_certificate
    from signer.queues import HSM, queue

    dispatcher = session.info.get("dispatcher")
    services = getattr(dispatcher, "services", None)
    if services is None:  # a session without workers (CLI, some tests): nothing to hand over
        return
    def enqueue() -> None:
        queue(services, HSM).enqueue(store_certificate, credential_id, result_ttl=600, failure_ttl=86400,
                                     description=f"store certificate of credential {credential_id}")

    after_commit(session, enqueue)


def import_issued(session: Session, actor: Principal, item_id: str, data: bytes, *,
                  trust_roots_file: Path | None = None, now: dt.datetime | None = None) -> IssuedCertificate:
    """Accept the Government CA's certificate for an awaiting item and activate its credential.

    ``data``: PEM (one or more certificates, or a PKCS7 block), DER, or DER PKCS#7. Refused, with
    nothing changed: no certificate for the HSM key (:class:`KeyMismatch`), a chain that does not
    verify now (:class:`ChainInvalid`), an item that is not awaiting a certificate.
    """
    require_roles(actor, RA_ROLES, "importing a certificate from the external CA")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(f"Tệp quá lớn / the upload is larger than {MAX_UPLOAD_BYTES} bytes")
    item, request, credential = _external(session, item_id, lock=True)
    require_organisation(session, actor, request.organisation_id, "certificate request")
    if item.status != "awaiting" or request.status != RequestStatus.AWAITING_CERTIFICATE.value:
        raise RequestStateConflict("Mục này không chờ chứng thư / this item is not awaiting a certificate "
                                   f"(item {item.status}, request {request.status})")
    allowed = {CredentialStatus.PENDING.value, CredentialStatus.ACTIVE.value}
    if request.action == "rekey":  # the executor revoked the old certificate when it swapped the key
        allowed.add(CredentialStatus.REVOKED.value)
    if credential.status not in allowed:
        raise RequestStateConflict(f"Khóa không còn sử dụng được / the credential is {credential.status}")
    certs = parse_certificates(data)
    if len(certs) > MAX_UPLOAD_CERTIFICATES:
        raise InvalidInput(f"Quá nhiều chứng thư / more than {MAX_UPLOAD_CERTIFICATES} certificates")
    uploaded = [fingerprint(c) for c in certs]
    key = _normalised_spki(credential.public_key_der)
    matching = [c for c in certs if _spki(c) == key]
    if not matching:
        raise KeyMismatch("Khóa công khai của chứng thư không khớp với khóa trong HSM / no uploaded certificate "
                          "certifies this credential's HSM key", uploaded)
    leaf = max(matching, key=lambda c: c.not_valid_before_utc)  # a re-issue for the same key wins
    if _is_ca(leaf):
        raise ChainInvalid("Chứng thư cho khóa này là chứng thư CA / the certificate for this key is a CA "
                           "certificate", uploaded)
    when = now or dt.datetime.now(dt.UTC)
    issuers, anchor_configured = _validate_chain(
        session, leaf, [c for c in certs if c is not leaf], trust_roots_file, when, uploaded)

    leaf_der, leaf_sha = leaf.public_bytes(Encoding.DER), fingerprint(leaf)
    row = session.scalar(select(IssuedCertificate).where(IssuedCertificate.fingerprint_sha256 == leaf_sha))
    if row is not None and not (row.source == "inventory" and row.credential_id is None):
        raise Conflict("Chứng thư này đã được ghi nhận / this certificate is already recorded")
    credential.certificate_der = leaf_der
    credential.chain_pem = "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in issuers)
    credential.status = CredentialStatus.ACTIVE.value
    credential.profile = credential.profile or request.profile
    if row is not None:  # tracked before as inventory: it now has its key here
        row.credential_id, row.source, row.organisation_id = credential.id, "external", credential.organisation_id
    else:
        row = record_issued(session, leaf, credential_id=credential.id, authority=None,
                            organisation_id=credential.organisation_id, source="external")
    item.certificate_id, item.status, item.error = row.id, "done", None
    session.flush()
    open_items = session.scalar(select(CertificateRequestItem.id).where(
        CertificateRequestItem.request_id == request.id,
        CertificateRequestItem.status.in_(("pending", "awaiting"))).limit(1))
    if open_items is None:
        request.status, request.completed_at = RequestStatus.COMPLETED.value, when
    audit.record(session, actor=actor.ref, action=IMPORT_ACTION, target=f"credential:{credential.id}",
                 organisation_id=credential.organisation_id,
                 detail={"request_id": request.id, "position": item.position, "fingerprint": leaf_sha,
                         "serial": format(leaf.serial_number, "x"), "issuer": leaf.issuer.rfc4514_string(),
                         "chain": [fingerprint(c) for c in issuers], "root_configured": anchor_configured,
                         "key_sha256": hashlib.sha256(key).hexdigest(), "request_status": request.status})
    _store_after_commit(session, credential.id)
    return row
