"""``POST /v1/verify``: a per-signature report on an uploaded PDF, or on a file and its detached CMS.

Inputs: ``multipart/form-data`` with a part ``file`` (a PDF), or ``file`` and ``signature`` (a
detached CMS, DER or PEM, over any file); or a raw ``application/pdf`` body. Callers: API clients
with the ``verify`` scope, or any signed-in person. Validation runs here, in the web process, fully
offline (see :mod:`signer.signing.verify`); each call is audited with the file's SHA-256 and the
number of signatures, never the contents.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from signer import audit
from signer.authz import require_scope
from signer.errors import InvalidInput, UnsupportedMediaType
from signer.http.auth import current_principal, services
from signer.principal import Principal
from signer.signing.errors import InvalidDocument
from signer.signing.material import latest_crls, trust_roots
from signer.signing.verify import Report, TrustSettings, verify_cms, verify_pdf

bp = Blueprint("verify", __name__, url_prefix="/v1/verify")
ACTION = "document.verify"
Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignerOut(_Out):
    common_name: str | None
    organisation: str | None
    serial: str = Field(description="certificate serial number, hex")
    issuer: str | None = Field(description="issuer common name")
    sha256: str = Field(description="SHA-256 fingerprint of the signer's certificate, hex")


class TimestampOut(_Out):
    time: str | None
    valid: bool = Field(description="intact and cryptographically valid")
    trusted: bool
    tsa: str | None


class IntegrityOut(_Out):
    intact: bool = Field(description="the signed bytes hash to the signed digest")
    valid: bool = Field(description="the signature value checks against the certificate")
    digest_algorithm: str | None = None
    mechanism: str | None = None


class TrustOut(_Out):
    trusted: bool = Field(description="chains to a configured root, nothing revoked")
    trust_problem: str | None
    anchor: str | None = None


class RevocationOut(_Out):
    status: Literal["good", "revoked", "unknown"]
    source: Literal["embedded", "service", "none"] = Field(
        description="embedded: the document's DSS or the CMS's own revocation data (at the "
                    "signature timestamp's time when there is one); service: this service's CRLs")
    revoked_at: str | None = None


class ModificationsOut(_Out):
    level: Literal["none", "lta_updates", "form_filling", "annotations", "other"] | None
    coverage: Literal["entire_file", "entire_revision", "contiguous_block_from_start", "unclear"] | None
    docmdp_ok: bool | None
    problem: str | None = Field(description="why pyHanko's difference analysis rejected a later update")


class SignatureOut(_Out):
    field: str | None = Field(description="PDF signature field; null for a detached CMS")
    signer: SignerOut | None
    signing_time: str | None = Field(description="claimed time: CMS signing-time or the PDF's /M")
    timestamp: TimestampOut | None
    integrity: IntegrityOut
    trust: TrustOut
    revocation: RevocationOut
    level: Level | None = Field(description="highest PAdES/CAdES baseline level reached")
    modifications: ModificationsOut | None
    profile_hint: Literal["approved", "issued", "appendix", "copy"] | None
    ok: bool = Field(description="intact, valid, trusted, timestamp and later changes acceptable")


class DocTimestampOut(_Out):
    field: str
    time: str | None
    intact: bool
    valid: bool
    trusted: bool
    tsa: str | None = None
    coverage: str | None = None
    problem: str | None = None


class DocumentOut(_Out):
    sha256: str
    size: int
    pages: int | None
    revisions: int | None = None
    dss: bool | None = None
    timestamps: list[DocTimestampOut] | None = None


class SummaryOut(_Out):
    all_valid: bool
    signatures: int
    valid: int


class VerifyReportOut(_Out):
    """The verification report (the ``200`` body of ``POST /v1/verify``)."""

    kind: Literal["pdf", "cms"]
    signatures: list[SignatureOut]
    document: DocumentOut
    summary: SummaryOut


def _multipart(limit: int) -> tuple[bytes, bytes | None]:
    """The ``file`` part and the optional ``signature`` part, each at most ``limit`` bytes."""
    request.file_limit = limit  # type: ignore[attr-defined]
    request.max_content_length = 2 * limit + (1 << 20)
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("send the document in a multipart part named 'file'", field="file")
    signature = request.files.get("signature")
    if signature is None and "signature" in request.form:  # a PEM pasted as a text field
        return upload.read(), request.form["signature"].encode()
    return upload.read(), signature.read() if signature is not None else None


def _inputs() -> tuple[bytes, bytes | None]:
    """The document and, for a detached CMS, the signature; the size limit holds while streaming."""
    limit = services().settings.max_document_bytes
    if request.mimetype == "multipart/form-data":
        return _multipart(limit)
    if request.mimetype == "application/pdf":
        request.max_content_length = limit
        return request.get_data(cache=False), None
    raise UnsupportedMediaType("send multipart/form-data (file, optional signature) or application/pdf")


def _trust() -> TrustSettings:
    with services().db.session() as db:
        return TrustSettings(roots=trust_roots(db, services().settings.trust_roots_file), crls=latest_crls(db))


def _audit(principal: Principal, sha256: str, *, outcome: str, **detail: object) -> None:
    audit.record_now(services().db, actor=principal.ref, action=ACTION, target=f"document:{sha256}",
                     outcome=outcome, organisation_id=principal.organisation_id,
                     detail={"sha256": sha256, **detail})


def _verify(data: bytes, signature: bytes | None) -> Report:
    if signature is not None:
        return verify_cms(data, signature, _trust())
    return verify_pdf(data, _trust())


@bp.post("")
def verify() -> ResponseReturnValue:
    """Verify every signature of a PDF, or a detached CMS over a file."""
    principal = current_principal()
    require_scope(principal, "verify")
    data, signature = _inputs()
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        report = _verify(data, signature)
    except InvalidDocument as exc:
        _audit(principal, sha256, outcome=audit.Outcome.FAILED, problem=exc.slug,
               kind="cms" if signature is not None else "pdf")
        raise
    _audit(principal, sha256, outcome=audit.Outcome.SUCCESS, kind=report["kind"],
           signatures=len(report["signatures"]), all_valid=report["summary"]["all_valid"])
    return jsonify(report)
