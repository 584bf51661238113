"""Bulk import of existing certificates into the registry, for inventory and expiry tracking.

Certificates whose keys live outside this service (USB tokens, SIM cards) are recorded with
``source = "inventory"`` and no credential, so expiry notices and dashboards cover them too.
Inputs: PEM (or DER / PKCS#7) files, or a CSV with a ``pem`` column and optional ``holder``,
``organisation_code`` (QCVN 102; default: the organisation given) and ``note``.

Every row gets its own outcome: ``imported``, ``duplicate`` (the fingerprint is already recorded,
or repeated in the upload) or ``error`` (with a message); bad rows never cost the good ones.
Duplicate look-ups are batched and each insert runs in its own savepoint, so 500 rows take well
under a second; one audit row covers the whole import (counts and the imported fingerprints).
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from signer import audit
from signer.authz import require_organisation, require_roles, visible_organisations
from signer.errors import InvalidInput
from signer.models import Organisation, Role
from signer.pki.external import InvalidCertificate, parse_certificates
from signer.pki.revocation import record_issued
from signer.principal import Principal
from signer.signing.models import IssuedCertificate

IMPORTERS = frozenset({Role.ADMIN, Role.RA_OFFICER})
MAX_ROWS = 10_000
MAX_CELL_BYTES = 64 * 1024  # a PEM certificate is 1-3 kB; anything much larger is not one
MAX_HOLDER = 255
MAX_NOTE = 500
ACTION = "certificate.inventory_import"
_LOOKUP_CHUNK = 500  # bound parameters per IN query (SQLite allows 32766; keep statements small)


@dataclass
class ImportRow:
    """The outcome of one certificate: a CSV row (``row``, 1 = first data row) or a file (``file``;
    ``row`` is then the certificate's position in that file)."""

    row: int
    file: str | None
    status: str  # imported | duplicate | error
    error: str | None = None
    certificate_id: str | None = None
    fingerprint: str | None = None
    subject: str | None = None
    not_after: str | None = None


@dataclass
class ImportReport:
    organisation_id: str
    rows: list[ImportRow] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for r in self.rows if r.status == status)

    def as_dict(self) -> dict[str, Any]:
        """The JSON answer: counts, then one entry per row in input order."""
        return {"organisation_id": self.organisation_id, "total": len(self.rows),
                "imported": self.count("imported"), "duplicates": self.count("duplicate"),
                "errors": self.count("error"), "rows": [asdict(r) for r in self.rows]}


@dataclass
class _Candidate:
    result: ImportRow
    cert: x509.Certificate | None = None
    der: bytes = b""
    holder: str | None = None
    note: str | None = None
    organisation_code: str | None = None
    issuer_sha256: str = ""
    serial: str = ""


def _error(candidate: _Candidate, message: str) -> None:
    candidate.result.status, candidate.result.error, candidate.cert = "error", message, None


def _load_cell(value: str) -> list[x509.Certificate]:
    """A CSV cell: PEM, or base64 DER without the armour (as some spreadsheets keep it)."""
    data = value.strip().encode("ascii", "replace")
    if data and b"-----BEGIN" not in data:
        try:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidCertificate("Ô pem không phải PEM hay base64 / the pem cell is neither PEM nor base64") \
                from None
    return parse_certificates(data)


def _text(value: str | None, limit: int) -> str | None:
    text = " ".join((value or "").split())
    return text[:limit] if text else None


def _csv_candidates(csv_data: bytes) -> Iterator[_Candidate]:
    try:
        text = csv_data.decode("utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError:
        raise InvalidInput("CSV phải mã hóa UTF-8 / the CSV must be UTF-8", field="csv") from None
    # Spreadsheets in a Vietnamese locale often save with ";": take the header's separator.
    header = text.partition("\n")[0]
    delimiter = max(",;\t", key=header.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
    if "pem" not in columns:
        raise InvalidInput("CSV cần cột 'pem' / the CSV needs a 'pem' column", field="csv")

    def cell(record: dict[str | Any, Any], name: str) -> str | None:
        value = record.get(columns[name]) if name in columns else None
        return value if isinstance(value, str) else None

    for number, record in enumerate(reader, 1):
        if number > MAX_ROWS:
            raise InvalidInput(f"Tối đa {MAX_ROWS} dòng / at most {MAX_ROWS} rows per import", field="csv")
        candidate = _Candidate(ImportRow(row=number, file=None, status="imported"),
                               holder=_text(cell(record, "holder"), MAX_HOLDER),
                               note=_text(cell(record, "note"), MAX_NOTE),
                               organisation_code=_text(cell(record, "organisation_code"), 64))
        pem = cell(record, "pem") or ""
        try:
            if not pem.strip():
                raise InvalidCertificate("Ô pem trống / the pem cell is empty")
            if len(pem) > MAX_CELL_BYTES:
                raise InvalidCertificate("Ô pem quá lớn / the pem cell is too large")
            certs = _load_cell(pem)
            if len(certs) != 1:
                raise InvalidCertificate("Mỗi dòng một chứng thư / one certificate per row")
            candidate.cert = certs[0]
        except InvalidInput as exc:
            _error(candidate, exc.detail)
        yield candidate


def _file_candidates(pem_files: Iterable[tuple[str, bytes]]) -> Iterator[_Candidate]:
    total = 0
    for name, data in pem_files:
        try:
            certs = parse_certificates(data)
        except InvalidInput as exc:
            candidate = _Candidate(ImportRow(row=1, file=name[:255], status="imported"))
            _error(candidate, exc.detail)
            yield candidate
            continue
        for index, cert in enumerate(certs, 1):
            total += 1
            if total > MAX_ROWS:
                raise InvalidInput(f"Tối đa {MAX_ROWS} chứng thư / at most {MAX_ROWS} certificates per import")
            yield _Candidate(ImportRow(row=index, file=name[:255], status="imported"), cert=cert)


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), _LOOKUP_CHUNK):
        yield values[start:start + _LOOKUP_CHUNK]


def _resolve_organisations(session: Session, actor: Principal, default: str,
                           candidates: list[_Candidate]) -> dict[str | None, str]:
    """QCVN 102 code -> organisation id for every code the rows name that the actor may see."""
    codes = sorted({c.organisation_code for c in candidates if c.cert is not None and c.organisation_code})
    found: dict[str | None, str] = {None: default}
    visible = visible_organisations(session, actor)
    for chunk in _chunks(codes):
        for org_id, code in session.execute(select(Organisation.id, Organisation.code)
                                            .where(Organisation.code.in_(chunk))):
            if visible is None or org_id in visible:
                found[code] = org_id
    return found


def _existing(session: Session, candidates: list[_Candidate]) -> tuple[dict[str, tuple[str, str | None]],
                                                                       set[tuple[str, str]]]:
    """Fingerprints already recorded (-> id, organisation) and (issuer, serial) pairs in use."""
    fingerprints = sorted({c.result.fingerprint for c in candidates if c.result.fingerprint})
    pairs = sorted({(c.issuer_sha256, c.serial) for c in candidates if c.cert is not None})
    by_fingerprint: dict[str, tuple[str, str | None]] = {}
    for chunk in _chunks(fingerprints):
        for row_id, sha, org in session.execute(
                select(IssuedCertificate.id, IssuedCertificate.fingerprint_sha256, IssuedCertificate.organisation_id)
                .where(IssuedCertificate.fingerprint_sha256.in_(chunk))):
            by_fingerprint[sha] = (row_id, org)
    used: set[tuple[str, str]] = set()
    for chunk in _chunks(pairs):
        used.update((i, s) for i, s in session.execute(
            select(IssuedCertificate.issuer_sha256, IssuedCertificate.serial)
            .where(tuple_(IssuedCertificate.issuer_sha256, IssuedCertificate.serial).in_(chunk))))
    return by_fingerprint, used


def _describe(c: _Candidate) -> None:
    if c.cert is None:
        return
    c.der = c.cert.public_bytes(Encoding.DER)
    c.result.fingerprint = hashlib.sha256(c.der).hexdigest()
    c.result.subject = c.cert.subject.rfc4514_string()[:1024]
    c.result.not_after = c.cert.not_valid_after_utc.isoformat()
    c.issuer_sha256 = hashlib.sha256(c.cert.issuer.public_bytes()).hexdigest()
    c.serial = format(c.cert.serial_number, "x")


def _insert(session: Session, c: _Candidate, organisation_id: str) -> bool:
    assert c.cert is not None
    try:
        with session.begin_nested():  # a concurrent import of the same certificate fails this row only
            row = record_issued(session, c.cert, credential_id=None, authority=None,
                                organisation_id=organisation_id, source="inventory", holder=c.holder)
    except IntegrityError:
        c.result.status, c.result.error = "duplicate", "Chứng thư đã được ghi nhận / already recorded"
        return False
    c.result.certificate_id = row.id
    return True


def import_inventory(session: Session, actor: Principal, organisation_id: str, *,
                     pem_files: list[tuple[str, bytes]] | None = None,
                     csv_data: bytes | None = None) -> ImportReport:
    """Record existing certificates (keys elsewhere) for ``organisation_id`` and report each row.

    Whole-upload problems (no input, a CSV without a ``pem`` column, too many rows) raise
    :class:`InvalidInput`; everything else is a per-row outcome. The caller commits.
    """
    require_roles(actor, IMPORTERS, "importing certificates")
    require_organisation(session, actor, organisation_id, "organisation")
    if not pem_files and csv_data is None:
        raise InvalidInput("Gửi tệp PEM hoặc CSV / send PEM files or a CSV", field="file")
    candidates = list(_file_candidates(pem_files or []))
    if csv_data is not None:
        candidates += list(_csv_candidates(csv_data))
    report = ImportReport(organisation_id, [c.result for c in candidates])

    for c in candidates:
        _describe(c)
    organisations = _resolve_organisations(session, actor, organisation_id, candidates)
    recorded, serials_in_use = _existing(session, candidates)
    visible = visible_organisations(session, actor)
    seen: dict[str, ImportRow] = {}
    imported: list[dict[str, Any]] = []

    for c in candidates:
        if c.cert is None:
            continue
        sha = c.result.fingerprint
        assert sha is not None
        if sha in recorded:
            row_id, org = recorded[sha]
            c.result.status = "duplicate"
            c.result.error = "Chứng thư đã được ghi nhận / already recorded"
            # Name the existing record only to those who may see it.
            c.result.certificate_id = row_id if visible is None or org in visible else None
            continue
        if sha in seen:
            c.result.status, c.result.certificate_id = "duplicate", seen[sha].certificate_id
            c.result.error = "Lặp lại trong tệp tải lên / repeated in the upload"
            continue
        if (c.issuer_sha256, c.serial) in serials_in_use:
            _error(c, "Đã có chứng thư khác cùng bên cấp và số hiệu / another certificate with the same issuer "
                      "and serial number is recorded")
            continue
        org_id = organisations.get(c.organisation_code)
        if org_id is None:
            _error(c, f"Không tìm thấy cơ quan mã {c.organisation_code} / organisation code "
                      f"{c.organisation_code} not found")
            continue
        if not _insert(session, c, org_id):
            continue
        seen[sha] = c.result
        serials_in_use.add((c.issuer_sha256, c.serial))
        entry: dict[str, Any] = {"fingerprint": sha, "organisation_id": org_id}
        if c.note:
            entry["note"] = c.note  # the registry has no note column: the audit keeps it
        imported.append(entry)

    audit.record(session, actor=actor.ref, action=ACTION, target=f"organisation:{organisation_id}",
                 organisation_id=organisation_id,
                 detail={"source": "csv" if csv_data is not None else "files",
                         "files": [name[:255] for name, _ in pem_files or []], "total": len(report.rows),
                         "imported": len(imported), "duplicates": report.count("duplicate"),
                         "errors": report.count("error"), "certificates": imported})
    return report
