"""JSON shapes of the resources; one function per resource so every endpoint agrees."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from signer.models import ApiClient, AuditEvent, Credential, Organisation, User
from signer.signing.models import IssuedCertificate


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with its offset (SQLite hands back naive UTC values)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def organisation(org: Organisation) -> dict[str, Any]:
    return {"id": org.id, "code": org.code, "name": org.name, "parent_id": org.parent_id,
            "created_at": iso(org.created_at)}


def user(u: User) -> dict[str, Any]:
    return {"id": u.id, "username": u.username, "full_name": u.full_name, "email": u.email,
            "organisation_id": u.organisation_id, "roles": sorted(r.value for r in u.roles),
            "active": u.active, "created_at": iso(u.created_at)}


def api_client(c: ApiClient) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "organisation_id": c.organisation_id, "key_id": c.key_id,
            "scopes": sorted(c.scope_set), "active": c.active, "created_at": iso(c.created_at),
            "last_used_at": iso(c.last_used_at) if c.last_used_at else None}


def credential(c: Credential) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "kind": c.kind, "organisation_id": c.organisation_id,
            "owner_user_id": c.owner_user_id, "key_spec": c.key_spec, "status": c.status,
            "has_certificate": c.certificate_der is not None, "created_at": iso(c.created_at)}


def certificate(c: IssuedCertificate, status: str, credential_status: str | None) -> dict[str, Any]:
    """A registry certificate; ``status`` is the effective one (good, revoked or expired)."""
    return {"id": c.id, "credential_id": c.credential_id, "credential_status": credential_status,
            "organisation_id": c.organisation_id, "source": c.source, "holder": c.holder, "serial": c.serial,
            "subject": c.subject, "fingerprint_sha256": c.fingerprint_sha256, "not_before": iso(c.not_before),
            "not_after": iso(c.not_after), "status": status, "revoked_at": iso(c.revoked_at) if c.revoked_at else None,
            "revocation_reason": c.revocation_reason, "notified_days": c.notified_days}


def audit_event(e: AuditEvent) -> dict[str, Any]:
    return {"seq": e.seq, "at": e.at, "actor": e.actor, "action": e.action, "target": e.target,
            "outcome": e.outcome, "organisation_id": e.organisation_id, "detail": e.detail,
            "hash": e.hash, "prev_hash": e.prev_hash}
