"""``/v1/admin/certificate-requests``, ``/v1/admin/approval-policies`` and ``/v1/admin/profiles``:
the certificate lifecycle for admins and RA officers (auditors read)."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from signer.api.views import iso
from signer.errors import InvalidInput
from signer.http.auth import current_principal, services
from signer.http.bodies import parse_json
from signer.lifecycle import policy, profiles
from signer.lifecycle import requests as lifecycle
from signer.lifecycle.models import CertificateRequest, RequestStatus

bp = Blueprint("lifecycle", __name__, url_prefix="/v1/admin")


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str | None = Field(default=None, max_length=500)


def request_view(r: CertificateRequest) -> dict[str, Any]:
    """A lifecycle request with its items' outcomes and the decisions so far."""
    approvals = sum(d.decision == "approve" for d in r.decisions)
    return {
        "id": r.id, "action": r.action, "status": r.status, "organisation_id": r.organisation_id,
        "profile": r.profile, "subject_profile": r.subject_profile, "ca": r.ca, "params": r.params,
        "requested_by": r.requested_by, "approvals": approvals, "approvals_required": r.approvals_required,
        "approver_roles": r.approver_roles, "expires_at": iso(r.expires_at), "created_at": iso(r.created_at),
        "decided_at": iso(r.decided_at) if r.decided_at else None,
        "completed_at": iso(r.completed_at) if r.completed_at else None,
        "decisions": [{"user_id": d.user_id, "decision": d.decision, "comment": d.comment, "at": iso(d.at)}
                      for d in r.decisions],
        "items": [{"position": i.position, "credential_id": i.credential_id, "certificate_id": i.certificate_id,
                   "status": i.status, "error": i.error, "has_csr": i.csr_der is not None} for i in r.items],
    }


@bp.post("/certificate-requests")
def submit() -> ResponseReturnValue:
    """Request a certificate change: issue, renew, rekey, revoke, suspend or resume (bulk: many credentials
    of one organisation under one approval)"""
    principal = current_principal()
    body = parse_json(lifecycle.RequestBody)
    with services().db.session() as db:
        return jsonify(request_view(lifecycle.submit(db, principal, body))), 201


@bp.get("/certificate-requests")
def list_requests() -> ResponseReturnValue:
    """Certificate requests, newest first; `?status=pending`"""
    principal = current_principal()
    status = request.args.get("status")
    if status is not None and status not in {s.value for s in RequestStatus}:
        raise InvalidInput(f"status is one of {[s.value for s in RequestStatus]}", field="status")
    with services().db.session(readonly=True) as db:
        return jsonify(items=[request_view(r) for r in lifecycle.list_requests(db, principal, status)])


@bp.get("/certificate-requests/<request_id>")
def get_request(request_id: str) -> ResponseReturnValue:
    """One certificate request with its decisions and per-item outcomes"""
    principal = current_principal()
    with services().db.session(readonly=True) as db:
        return jsonify(request_view(lifecycle.get(db, principal, request_id)))


def _decide(request_id: str, decision: Literal["approve", "reject"]) -> ResponseReturnValue:
    principal = current_principal()
    body = parse_json(DecisionBody) if request.content_length else DecisionBody()
    with services().db.session() as db:
        return jsonify(request_view(lifecycle.decide(db, principal, request_id, decision, body.comment)))


@bp.post("/certificate-requests/<request_id>/approve")
def approve(request_id: str) -> ResponseReturnValue:
    """Approve (not your own request); the last approval needed hands it to the hsm worker"""
    return _decide(request_id, "approve")


@bp.post("/certificate-requests/<request_id>/reject")
def reject(request_id: str) -> ResponseReturnValue:
    """Reject: one rejection ends the request"""
    return _decide(request_id, "reject")


@bp.post("/certificate-requests/<request_id>/cancel")
def cancel(request_id: str) -> ResponseReturnValue:
    """Withdraw a pending request (its requester, or an admin)"""
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(request_view(lifecycle.cancel(db, principal, request_id)))


def _policy_view(p: policy.Policy) -> dict[str, Any]:
    return {"action": p.action, "profile": p.profile, "approvals_required": p.approvals_required,
            "roles": list(p.roles), "ttl_hours": p.ttl_hours, "builtin": p.builtin}


@bp.get("/approval-policies")
def list_policies() -> ResponseReturnValue:
    """Approval policies in force (stored ones and the built-in defaults)"""
    principal = current_principal()
    with services().db.session(readonly=True) as db:
        return jsonify(items=[_policy_view(p) for p in policy.list_policies(db, principal)])


@bp.put("/approval-policies/<action>/<profile>")
def put_policy(action: str, profile: str) -> ResponseReturnValue:
    """Set how many approvers, from which roles, an action needs on a profile (`*` for all profiles)"""
    principal = current_principal()
    body = parse_json(policy.PolicyBody)
    with services().db.session() as db:
        return jsonify(_policy_view(policy.set_policy(db, principal, action, profile, body)))


@bp.get("/profiles")
def list_profiles() -> ResponseReturnValue:
    """Certificate and subject profiles (built-in, overridden by the deployment's own)"""
    from signer.authz import READERS, require_roles

    principal = current_principal()
    require_roles(principal, READERS, "reading profiles")
    with services().db.session(readonly=True) as db:
        return jsonify(items=[{"kind": kind, **p.model_dump(mode="json")}
                              for (kind, _), p in profiles.all_profiles(db).items()])


@bp.put("/profiles/<kind>/<name>")
def put_profile(kind: str, name: str) -> ResponseReturnValue:
    """Create or replace a certificate or subject profile (JSON document)"""
    principal = current_principal()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("send the profile as a JSON object")
    with services().db.session() as db:
        saved = profiles.save_profile(db, principal, kind, name, body)
        return jsonify({"kind": kind, **saved.model_dump(mode="json")})
