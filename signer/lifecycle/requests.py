"""Lifecycle requests and their approval: submit, approve, reject, cancel, expire.

Rules (DESIGN.md section 6): the policy in force is copied into the request; approvers hold one of
its roles and see the organisation; nobody approves their own request or decides twice; any
rejection rejects; N approvals approve; a request past ``expires_at`` can no longer be decided.
Approval hands the request to the hsm worker (:mod:`signer.lifecycle.executor`) after commit.
Bulk requests act on many credentials of one organisation under one approval.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

import hsm
from signer import audit
from signer.authz import READERS, require_organisation, require_roles, visible_organisations
from signer.db import after_commit
from signer.errors import Conflict, Forbidden, InvalidInput, NotFound
from signer.lifecycle import profiles
from signer.lifecycle.models import (
    Action,
    CertificateDecision,
    CertificateRequest,
    CertificateRequestItem,
    RequestStatus,
)
from signer.lifecycle.policy import APPROVER_ROLES, policy_for
from signer.models import Credential, CredentialStatus, Organisation, Role, User, aware
from signer.pki.revocation import REASONS, current_certificate
from signer.principal import Principal

if TYPE_CHECKING:
    from signer.services import Services

REQUESTERS = APPROVER_ROLES
MAX_ITEMS = 500
OPEN = (RequestStatus.PENDING.value, RequestStatus.APPROVED.value, RequestStatus.EXECUTING.value,
        RequestStatus.AWAITING_CERTIFICATE.value)
# What state a credential must be in for each action on it.
_NEEDS: dict[Action, tuple[str, ...]] = {
    Action.RENEW: (CredentialStatus.ACTIVE.value, CredentialStatus.SUSPENDED.value, CredentialStatus.EXPIRED.value),
    Action.REKEY: (CredentialStatus.ACTIVE.value, CredentialStatus.SUSPENDED.value, CredentialStatus.EXPIRED.value),
    Action.REVOKE: (CredentialStatus.ACTIVE.value, CredentialStatus.SUSPENDED.value, CredentialStatus.PENDING.value),
    Action.SUSPEND: (CredentialStatus.ACTIVE.value,),
    Action.RESUME: (CredentialStatus.SUSPENDED.value,),
}


class RequestBody(BaseModel):
    """A lifecycle request as the admin API and the CLI take it."""

    model_config = ConfigDict(extra="forbid")
    action: Action
    organisation_id: str = Field(min_length=1, max_length=36)
    credential_ids: list[str] = Field(default_factory=list, max_length=MAX_ITEMS)
    # issue
    name: str | None = Field(default=None, min_length=1, max_length=255)
    owner_user_id: str | None = Field(default=None, max_length=36)
    profile: str | None = Field(default=None, max_length=64)
    subject_profile: str | None = Field(default=None, max_length=64)
    subject: dict[str, str] = Field(default_factory=dict, max_length=20)
    key_spec: str | None = Field(default=None, max_length=16)
    ca: Literal["builtin", "external"] = "builtin"
    # revoke
    reason: str | None = Field(default=None, max_length=32)
    invalidity_date: dt.datetime | None = None
    comment: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _shape(self) -> RequestBody:
        if self.action is Action.ISSUE:
            if self.credential_ids:
                raise ValueError("an issue request creates its credential: give no credential_ids")
            if not (self.name and self.profile and self.subject_profile):
                raise ValueError("an issue request needs name, profile and subject_profile")
        elif not self.credential_ids:
            raise ValueError(f"a {self.action.value} request needs credential_ids")
        if self.action is Action.REVOKE and self.reason is None:
            self.reason = "unspecified"
        if self.action is not Action.REVOKE and (self.reason or self.invalidity_date):
            raise ValueError("reason and invalidity_date belong to revoke requests")
        if self.invalidity_date is not None and self.invalidity_date.tzinfo is None:
            raise ValueError("invalidity_date needs a time zone")
        return self


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def credential_ca(session: Session, credential: Credential) -> str:
    """``builtin`` unless the credential's current certificate came from an external CA."""
    cert = current_certificate(session, credential)
    return "external" if cert is not None and cert.source == "external" else "builtin"


def _check_issue(session: Session, body: RequestBody, org: Organisation) -> dict[str, Any]:
    from signer.signing.material import authority

    assert body.profile
    assert body.subject_profile
    cert_profile = profiles.certificate_profile(session, body.profile)
    subject_profile = profiles.subject_profile(session, body.subject_profile)
    key_spec = body.key_spec or cert_profile.key_specs[0]
    if key_spec not in cert_profile.key_specs:
        raise InvalidInput(f"profile {cert_profile.name} allows key specs {list(cert_profile.key_specs)}",
                           field="key_spec")
    subject = subject_profile.build(body.subject, org)  # refuses missing or malformed fields now
    if cert_profile.credential_kind == "personal":
        owner = session.get(User, body.owner_user_id) if body.owner_user_id else None
        if owner is None or owner.organisation_id != org.id or Role.LEADER not in owner.roles:
            raise InvalidInput("a personal certificate needs owner_user_id: a leader of the organisation",
                               field="owner_user_id")
    elif body.owner_user_id is not None:
        raise InvalidInput("an organisation certificate has no personal owner", field="owner_user_id")
    if body.ca == "builtin" and authority(session, "issuing") is None:
        raise Conflict("the built-in CA is not initialised (signer ca init)")
    hsm.KeySpec.parse(key_spec)
    return {"name": body.name, "owner_user_id": body.owner_user_id, "key_spec": key_spec,
            "subject": dict(body.subject), "subject_dn": subject.rfc4514_string(),
            "kind": cert_profile.credential_kind}


def _check_credentials(session: Session, body: RequestBody) -> list[Credential]:
    if len(set(body.credential_ids)) != len(body.credential_ids):
        raise InvalidInput("a credential appears twice", field="credential_ids")
    found = {c.id: c for c in session.scalars(select(Credential).where(Credential.id.in_(body.credential_ids)))}
    needs = _NEEDS[body.action]
    for cid in body.credential_ids:
        cred = found.get(cid)
        if cred is None or cred.organisation_id != body.organisation_id:
            raise InvalidInput(f"credential {cid} is not a credential of this organisation", field="credential_ids")
        if cred.status not in needs:
            raise Conflict(f"credential {cid} is {cred.status}; {body.action.value} needs {' or '.join(needs)}")
    busy = session.scalar(select(CertificateRequestItem.credential_id).join(CertificateRequest).where(
        CertificateRequestItem.credential_id.in_(body.credential_ids), CertificateRequest.status.in_(OPEN)).limit(1))
    if busy is not None:
        raise Conflict(f"credential {busy} already has an open certificate request")
    if body.action is Action.RENEW:
        for cred in found.values():
            if cred.profile and not profiles.certificate_profile(session, cred.profile).renew_same_key:
                raise Conflict(f"profile {cred.profile} does not renew the same key: request a re-key")
    if body.action is Action.REKEY and any(credential_ca(session, c) == "external" for c in found.values()):
        raise Conflict("re-keying a Government CA certificate: request a new certificate (issue) and revoke "
                       "the old one once the new one is imported")
    return [found[cid] for cid in body.credential_ids]


def submit(session: Session, actor: Principal, body: RequestBody, now: dt.datetime | None = None
           ) -> CertificateRequest:
    """Check and record a request; it waits for approvals under the policy in force now."""
    require_roles(actor, REQUESTERS, "requesting certificate changes")
    require_organisation(session, actor, body.organisation_id, "organisation")
    org = session.get(Organisation, body.organisation_id)
    if org is None:
        raise NotFound("organisation not found")
    if body.reason is not None and body.reason not in REASONS:
        raise InvalidInput(f"reason must be one of {sorted(REASONS)}", field="reason")
    now = now or _now()
    if body.invalidity_date is not None and body.invalidity_date > now:
        raise InvalidInput("the invalidity date cannot be in the future", field="invalidity_date")
    params: dict[str, Any] = {"comment": body.comment} if body.comment else {}
    creds: list[Credential] = []
    profile = body.profile
    if body.action is Action.ISSUE:
        params |= _check_issue(session, body, org)
    else:
        creds = _check_credentials(session, body)
        profile = profile or next((c.profile for c in creds if c.profile), None)
        if body.action is Action.REVOKE:
            params |= {"reason": body.reason, "invalidity_date": body.invalidity_date.isoformat()
                       if body.invalidity_date else None}
    policy = policy_for(session, body.action.value, profile)
    request = CertificateRequest(
        action=body.action.value, organisation_id=org.id, profile=profile, subject_profile=body.subject_profile,
        ca=body.ca if body.action is Action.ISSUE else "builtin", params=params, requested_by=actor.ref,
        requester_user_id=actor.id if actor.kind == "user" else None,
        approvals_required=policy.approvals_required, approver_roles=list(policy.roles),
        expires_at=now + dt.timedelta(hours=policy.ttl_hours), created_at=now)
    request.items = [CertificateRequestItem(position=i, credential_id=c.id) for i, c in enumerate(creds)] or [
        CertificateRequestItem(position=0)]
    session.add(request)
    session.flush()
    audit.record(session, actor=actor.ref, action=f"certificate_request.{body.action.value}",
                 target=f"certificate_request:{request.id}", organisation_id=org.id,
                 detail={"credentials": [c.id for c in creds], "profile": profile, "ca": request.ca,
                         "approvals_required": policy.approvals_required, "approver_roles": list(policy.roles),
                         "expires_at": request.expires_at.isoformat(), **{k: v for k, v in params.items()
                                                                          if k != "comment"}})
    return request


def _locked(session: Session, request_id: str) -> CertificateRequest:
    found = session.scalar(select(CertificateRequest).where(CertificateRequest.id == request_id).with_for_update())
    if found is None:
        raise NotFound("certificate request not found")
    return found


def _expire_if_due(session: Session, request: CertificateRequest, now: dt.datetime) -> bool:
    if request.status == RequestStatus.PENDING.value and aware(request.expires_at) <= now:
        request.status, request.decided_at = RequestStatus.EXPIRED.value, now
        audit.record(session, actor="system", action="certificate_request.expire",
                     target=f"certificate_request:{request.id}", organisation_id=request.organisation_id)
        return True
    return False


def decide(session: Session, actor: Principal, request_id: str, decision: Literal["approve", "reject"],
           comment: str | None = None, now: dt.datetime | None = None) -> CertificateRequest:
    """Record one approver's decision; the request is approved at N approvals, rejected at one rejection."""
    now = now or _now()
    if actor.kind != "user":
        raise Forbidden("only people approve certificate requests")
    request = _locked(session, request_id)
    require_organisation(session, actor, request.organisation_id, "certificate request")
    if not actor.has_any_role(frozenset(Role(r) for r in request.approver_roles)):
        raise Forbidden(f"approving this request needs one of the roles: {', '.join(request.approver_roles)}")
    if request.requester_user_id == actor.id or request.requested_by == actor.ref:
        raise Forbidden("nobody approves their own request")
    if _expire_if_due(session, request, now):
        session.commit()  # the expiry stands even though this decision is refused
        raise Conflict("the request has expired")
    if request.status != RequestStatus.PENDING.value:
        raise Conflict(f"the request is {request.status}, not pending")
    if any(d.user_id == actor.id for d in request.decisions):
        raise Conflict("you have already decided on this request")
    request.decisions.append(CertificateDecision(user_id=actor.id, decision=decision, comment=comment, at=now))
    approvals = sum(d.decision == "approve" for d in request.decisions)
    if decision == "reject":
        request.status, request.decided_at = RequestStatus.REJECTED.value, now
    elif approvals >= request.approvals_required:
        request.status, request.decided_at = RequestStatus.APPROVED.value, now
        execute_after_commit(session, request.id)
    session.flush()
    audit.record(session, actor=actor.ref, action=f"certificate_request.{decision}",
                 target=f"certificate_request:{request.id}", organisation_id=request.organisation_id,
                 detail={"approvals": approvals, "approvals_required": request.approvals_required,
                         "status": request.status})
    return request


def cancel(session: Session, actor: Principal, request_id: str, now: dt.datetime | None = None) -> CertificateRequest:
    """The requester (or an admin) withdraws a request still waiting for approval."""
    request = _locked(session, request_id)
    require_organisation(session, actor, request.organisation_id, "certificate request")
    if request.requested_by != actor.ref:
        require_roles(actor, frozenset({Role.ADMIN}), "cancelling someone else's request")
    if request.status != RequestStatus.PENDING.value:
        raise Conflict(f"the request is {request.status}, not pending")
    request.status, request.decided_at = RequestStatus.CANCELLED.value, now or _now()
    audit.record(session, actor=actor.ref, action="certificate_request.cancel",
                 target=f"certificate_request:{request.id}", organisation_id=request.organisation_id)
    return request


def expire_due(session: Session, now: dt.datetime | None = None) -> int:
    """End every pending request past its expiry (scheduled)."""
    now = now or _now()
    ids = session.scalars(select(CertificateRequest.id).where(
        CertificateRequest.status == RequestStatus.PENDING.value, CertificateRequest.expires_at <= now)).all()
    return sum(_expire_if_due(session, _locked(session, rid), now) for rid in ids)


def get(session: Session, actor: Principal, request_id: str) -> CertificateRequest:
    require_roles(actor, READERS, "reading certificate requests")
    request = session.get(CertificateRequest, request_id)
    if request is None:
        raise NotFound("certificate request not found")
    require_organisation(session, actor, request.organisation_id, "certificate request")
    return request


def list_requests(session: Session, actor: Principal, status: str | None = None,
                  limit: int = 100) -> list[CertificateRequest]:
    """Requests of the organisations ``actor`` sees, newest first."""
    require_roles(actor, READERS, "reading certificate requests")
    query = select(CertificateRequest).order_by(CertificateRequest.created_at.desc()).limit(limit)
    visible = visible_organisations(session, actor)
    if visible is not None:
        query = query.where(CertificateRequest.organisation_id.in_(visible))
    if status is not None:
        query = query.where(CertificateRequest.status == status)
    return list(session.scalars(query))


def execute_after_commit(session: Session, request_id: str) -> None:
    """Queue the hsm worker's execution once the approval is committed (the scheduler re-queues
    approved requests that no worker picked up, e.g. when Redis was down at that moment)."""
    from signer.signing.dispatch import Dispatcher

    dispatcher = session.info.get("dispatcher")
    if isinstance(dispatcher, Dispatcher):
        services = dispatcher.services
        after_commit(session, lambda: enqueue_execution(services, request_id))


def enqueue_execution(services: Services, request_id: str) -> None:
    """Hand one approved request to the hsm workers."""
    from signer.jobs.lifecycle import execute_request
    from signer.queues import HSM, queue

    queue(services, HSM).enqueue(execute_request, request_id, job_timeout=3600, result_ttl=600,
                                 failure_ttl=86400, description=f"execute certificate request {request_id}")
