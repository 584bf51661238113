"""Certificate files: the external CA's CSR and form summary out, its certificate in, and bulk
import of existing certificates (keys on USB tokens or SIM cards) for expiry tracking.

Admins and RA officers of the organisation (or above it). Uploads are PEM, DER or PKCS#7; a failed
certificate import is audited with the uploaded certificates' fingerprints, never their contents.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from flask import Blueprint, Response, jsonify, request
from flask.typing import ResponseReturnValue

from signer import audit
from signer.api.views import iso
from signer.errors import InvalidInput, UnsupportedMediaType
from signer.http.auth import current_principal, services
from signer.pki import external, inventory
from signer.pki.registry import effective_status

bp = Blueprint("certificate_files", __name__, url_prefix="/v1/admin")
MAX_IMPORT_BYTES = 16 << 20  # a CSV of 10,000 certificates
_ITEM = "/certificate-requests/<request_id>/items/<int:position>"
#: Bodies a certificate upload may come as (besides multipart with a ``file`` part).
CERTIFICATE_TYPES = ("application/x-pem-file", "application/pem-certificate-chain", "application/pkix-cert",
                     "application/pkcs7-mime", "application/x-pkcs7-certificates", "application/octet-stream",
                     "text/plain")


def _export_audit(request_id: str, position: int, what: str, csr_sha256: str, organisation_id: str) -> None:
    # Who took which CSR out: the request's paper trail towards the Government CA.
    principal = current_principal()
    audit.record_now(services().db, actor=principal.ref, action="certificate_request.export",
                     target=f"certificate_request:{request_id}", organisation_id=organisation_id,
                     detail={"position": position, "format": what, "csr_sha256": csr_sha256})


def _summary(request_id: str, position: int, what: str) -> dict[str, Any]:
    with services().db.session(readonly=True) as db:
        item = external.load_item(db, current_principal(), request_id, position)
        summary = external.export(db, item.id)
    _export_audit(request_id, position, what, summary["csr_sha256"], summary["organisation"]["id"])
    return summary


@bp.get(f"{_ITEM}/csr")
def request_csr(request_id: str, position: int) -> ResponseReturnValue:
    """The PKCS#10 CSR to send to the Government CA (PEM; `?format=der` for DER)"""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    fmt = request.args.get("format", "pem")
    if fmt not in ("pem", "der"):
        raise InvalidInput("format là pem hoặc der / format is pem or der", field="format")
    with services().db.session(readonly=True) as db:
        item = external.load_item(db, current_principal(), request_id, position)
        der = external.csr_der(db, item.id)
        organisation_id = item.request.organisation_id
    _export_audit(request_id, position, f"csr-{fmt}", hashlib.sha256(der).hexdigest(), organisation_id)
    name = f"{request_id}-{position}.csr"
    if fmt == "der":
        resp = Response(der, mimetype="application/pkcs10")
    else:
        resp = Response(x509.load_der_x509_csr(der).public_bytes(Encoding.PEM), mimetype="application/x-pem-file")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return resp


@bp.get(f"{_ITEM}/summary")
def request_summary(request_id: str, position: int) -> ResponseReturnValue:
    """The form data for the Government CA: organisation, subject, profile, key, CSR, approvers"""
    return jsonify(_summary(request_id, position, "summary-json"))


@bp.get(f"{_ITEM}/summary.pdf")
def request_summary_pdf(request_id: str, position: int) -> ResponseReturnValue:
    """The same summary as a one-page A4 PDF, to print or attach to the Government CA's form"""
    pdf = external.summary_pdf(_summary(request_id, position, "summary-pdf"))
    resp = Response(pdf, mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'attachment; filename="{request_id}-{position}-summary.pdf"'
    return resp


def _certificate_upload() -> bytes:
    request.max_content_length = external.MAX_UPLOAD_BYTES + (64 << 10)
    if request.mimetype == "multipart/form-data":
        request.file_limit = external.MAX_UPLOAD_BYTES  # type: ignore[attr-defined]
        upload = request.files.get("file")
        if upload is not None:
            return bytes(upload.read())
        if "file" in request.form:  # a PEM pasted as a text field
            return request.form["file"].encode()
        raise InvalidInput("Gửi chứng thư trong phần 'file' / send the certificate in a part named 'file'",
                           field="file")
    if request.mimetype in CERTIFICATE_TYPES:
        return request.get_data(cache=False)
    raise UnsupportedMediaType("send the certificate as PEM, DER or PKCS#7 (application/x-pem-file, "
                               "application/pkix-cert, application/pkcs7-mime) or multipart/form-data")


@bp.post(f"{_ITEM}/certificate")
def import_certificate(request_id: str, position: int) -> ResponseReturnValue:
    """Import the certificate the Government CA issued (PEM bundle, DER or PKCS#7); it must
    certify the HSM key and its chain must verify"""
    principal = current_principal()
    data = _certificate_upload()
    svc = services()
    organisation_id: str | None = None
    try:
        with svc.db.session() as db:
            item = external.load_item(db, principal, request_id, position)
            organisation_id = item.request.organisation_id
            row = external.import_issued(db, principal, item.id, data,
                                         trust_roots_file=svc.settings.trust_roots_file)
            body = {"id": row.id, "credential_id": row.credential_id, "organisation_id": row.organisation_id,
                    "source": row.source, "serial": row.serial, "subject": row.subject,
                    "fingerprint_sha256": row.fingerprint_sha256, "not_before": iso(row.not_before),
                    "not_after": iso(row.not_after), "status": effective_status(row, dt.datetime.now(dt.UTC)),
                    "request_status": item.request.status}
    except (external.KeyMismatch, external.ChainInvalid, external.InvalidCertificate) as exc:
        audit.record_now(svc.db, actor=principal.ref, action=external.IMPORT_ACTION,
                         target=f"certificate_request:{request_id}", outcome=audit.Outcome.FAILED,
                         organisation_id=organisation_id,
                         detail={"position": position, "problem": exc.slug,
                                 "uploaded": getattr(exc, "fingerprints", [])})
        raise
    return jsonify(body), 201


def _import_inputs() -> tuple[list[tuple[str, bytes]], bytes | None, str | None]:
    """PEM files (``file`` parts), a CSV (``csv`` part or field, or a text/csv body) and the
    organisation (``organisation_id`` field or query parameter)."""
    request.max_content_length = MAX_IMPORT_BYTES
    organisation_id = request.args.get("organisation_id")
    if request.mimetype == "multipart/form-data":
        request.file_limit = MAX_IMPORT_BYTES  # type: ignore[attr-defined]
        files = [(f.filename or f"file-{n}", f.read()) for n, f in enumerate(request.files.getlist("file"), 1)]
        csv_part = request.files.get("csv")
        csv_data = csv_part.read() if csv_part is not None else (
            request.form["csv"].encode() if "csv" in request.form else None)
        return files, csv_data, request.form.get("organisation_id") or organisation_id
    if request.mimetype in ("text/csv", "application/csv"):
        return [], request.get_data(cache=False), organisation_id
    raise UnsupportedMediaType("send multipart/form-data (file parts and/or a csv part) or a text/csv body")


@bp.post("/certificates/import")
def import_certificates() -> ResponseReturnValue:
    """Import existing certificates (PEM files, or a CSV with a `pem` column) for inventory and
    expiry tracking; answers one result per row, bad rows do not stop the good ones"""
    principal = current_principal()
    files, csv_data, organisation_id = _import_inputs()
    organisation_id = organisation_id or principal.organisation_id
    if not organisation_id:
        raise InvalidInput("Thiếu organisation_id / organisation_id is required", field="organisation_id")
    with services().db.session() as db:
        report = inventory.import_inventory(db, principal, organisation_id, pem_files=files, csv_data=csv_data)
    return jsonify(report.as_dict())
