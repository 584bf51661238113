"""``/v1/audit``: auditors and admins read the log and check its chain."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from signer import audit
from signer.api import views
from signer.authz import require_roles, visible_organisations
from signer.errors import InvalidInput
from signer.http.auth import current_principal, services
from signer.models import AuditEvent, Role

bp = Blueprint("audit", __name__, url_prefix="/v1/audit")
AUDIT_READERS = frozenset({Role.AUDITOR, Role.ADMIN})
# audit_events.seq is a 32-bit INTEGER; a larger cursor would be a database error on PostgreSQL.
MAX_SEQ = 2**31 - 1


def _int_arg(name: str, default: int, upper: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= upper:
        raise InvalidInput(f"{name} must be an integer between 0 and {upper}", field=name)
    return int(raw)


@bp.get("")
def list_events() -> ResponseReturnValue:
    principal = current_principal()
    require_roles(principal, AUDIT_READERS, "reading the audit log")
    after = _int_arg("after", 0, MAX_SEQ)
    limit = _int_arg("limit", 100, 1000)
    with services().db.session() as db:
        query = select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(limit)
        visible = visible_organisations(db, principal)
        if visible is not None:
            query = query.where(AuditEvent.organisation_id.in_(visible))
        events = list(db.scalars(query))
    return jsonify(items=[views.audit_event(e) for e in events],
                   next_after=events[-1].seq if events else after)


@bp.get("/verify")
def verify_chain() -> ResponseReturnValue:
    principal = current_principal()
    require_roles(principal, AUDIT_READERS, "verifying the audit log")
    with services().db.session() as db:
        report = audit.verify(db)
    return jsonify(ok=report.ok, checked=report.checked, broken_seq=report.broken_seq,
                   reason=report.reason, summary=report.describe())
