"""Verifying what arrives: every PDF's signatures (integrity, trust against the configured roots,
revocation where the document or our CRLs say it), offline, with the service's own verifier.

The verdict decides what happens without a clerk:
- ``invalid`` (a signature broken, a signer revoked, no signature at all, an unreadable PDF): the
  document is stored as rejected and answered 02 with the reason;
- ``valid`` (every signature intact, trusted and not revoked): stored, answered 01;
- ``indeterminate`` (intact but not provably trusted, or revocation unknown): stored, answered 01;
  the clerk decides with the report in front of them.
"""

from __future__ import annotations

import hashlib
from typing import Any

from exchange import edxml
from exchange.errors import PacketError
from signer.services import Services
from signer.signing.errors import InvalidDocument
from signer.signing.material import latest_crls, trust_roots
from signer.signing.verify import Report, TrustSettings, verify_pdf


def _trust(services: Services) -> TrustSettings:
    with services.db.session(readonly=True) as db:
        return TrustSettings(roots=trust_roots(db, services.settings.trust_roots_file), crls=latest_crls(db))


def _problem(name: str, report: Report) -> str | None:
    """Why this PDF makes the document invalid, in Vietnamese then English; None when it does not."""
    signatures = report["signatures"]
    if not signatures:
        return f"Tệp {name} không có chữ ký số (no digital signature)"
    for sig in signatures:
        integrity = sig["integrity"]
        if not (integrity["intact"] and integrity["valid"]):
            return (f"Chữ ký số trên tệp {name} không hợp lệ: nội dung đã bị thay đổi sau khi ký "
                    f"(signature {sig['field']} fails the integrity check)")
        if sig["revocation"]["status"] == "revoked":
            return f"Chứng thư số ký tệp {name} đã bị thu hồi (signer certificate revoked)"
    return None


def verify_files(services: Services, packet: edxml.DocumentPacket) -> tuple[
        list[dict[str, Any]], dict[str, Any], str, str | None]:
    """Store every attached file, verify every PDF; (files, verification, verdict, rejection reason)."""
    trust: TrustSettings | None = None
    files: list[dict[str, Any]] = []
    reports: list[dict[str, Any]] = []
    problems: list[str] = []
    all_valid = True
    for attachment in packet.attachments:
        try:
            unpacked = edxml.unpack(attachment)
        except PacketError as exc:
            problems.append(f"Tệp {attachment.name} không đọc được ({exc})")
            continue
        for f in unpacked:
            entry = {"name": f.name, "content_type": f.content_type, "size": len(f.data),
                     "sha256": hashlib.sha256(f.data).hexdigest(), "blob": services.blobs.put(f.data, prefix="in")}
            files.append(entry)
            if not (f.content_type == "application/pdf" or f.name.lower().endswith(".pdf")):
                reports.append({"name": f.name, "verified": False})
                continue
            trust = trust or _trust(services)
            try:
                report = verify_pdf(f.data, trust)
            except InvalidDocument as exc:
                problems.append(f"Tệp {f.name} không phải PDF đọc được ({exc.detail})")
                reports.append({"name": f.name, "verified": False, "error": exc.detail})
                continue
            reports.append({"name": f.name, "verified": True, "summary": report["summary"],
                            "signatures": report["signatures"]})
            problem = _problem(f.name, report)
            if problem:
                problems.append(problem)
            all_valid = all_valid and bool(report["summary"]["all_valid"])
    if not any(r.get("verified") for r in reports) and not problems:
        problems.append("Văn bản không có tệp PDF được ký số (no signed PDF attached)")
    verdict = "invalid" if problems else ("valid" if all_valid else "indeterminate")
    return files, {"files": reports}, verdict, "; ".join(problems)[:1000] or None
