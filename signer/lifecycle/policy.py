"""Approval policies: how many approvers, from which roles, each lifecycle action needs.

A policy is data (table ``approval_policies``): one row per action and certificate profile, with
profile ``*`` as the action's default; without a row the built-in default below applies. The
policy in force is copied into each request when it is made, so editing a policy never changes
the rules of a request already waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from signer import audit
from signer.authz import MANAGERS, READERS, require_roles
from signer.errors import InvalidInput
from signer.lifecycle.models import Action, ApprovalPolicy
from signer.models import Role, utcnow
from signer.principal import Principal

APPROVER_ROLES = frozenset({Role.ADMIN, Role.RA_OFFICER})
MAX_APPROVERS = 5


@dataclass(frozen=True)
class Policy:
    action: str
    profile: str
    approvals_required: int
    roles: tuple[str, ...]
    ttl_hours: int
    builtin: bool = False


# One approver by default so a small unit (one admin, one RA officer) can work; a ministry sets
# two or more for issue and re-key (PUT /v1/admin/approval-policies/issue/*). Revocation requests
# expire sooner: a lost phone or a leader who left must not wait three days unnoticed.
DEFAULTS: dict[str, Policy] = {
    Action.ISSUE: Policy("issue", "*", 1, ("admin", "ra_officer"), 72, True),
    Action.RENEW: Policy("renew", "*", 1, ("admin", "ra_officer"), 72, True),
    Action.REKEY: Policy("rekey", "*", 1, ("admin", "ra_officer"), 72, True),
    Action.REVOKE: Policy("revoke", "*", 1, ("admin", "ra_officer"), 24, True),
    Action.SUSPEND: Policy("suspend", "*", 1, ("admin", "ra_officer"), 24, True),
    Action.RESUME: Policy("resume", "*", 1, ("admin", "ra_officer"), 24, True),
}


class PolicyBody(BaseModel):
    """A policy as the admin API takes it."""

    model_config = ConfigDict(extra="forbid")
    approvals_required: int = Field(ge=1, le=MAX_APPROVERS)
    roles: set[Role] = Field(min_length=1)
    ttl_hours: int = Field(ge=1, le=24 * 30)


def _from_row(row: ApprovalPolicy) -> Policy:
    return Policy(row.action, row.profile, row.approvals_required, tuple(sorted(row.roles)), row.ttl_hours)


def policy_for(session: Session, action: str, profile: str | None) -> Policy:
    """The policy in force for ``action`` on ``profile``: exact row, else the action's ``*`` row,
    else the built-in default."""
    rows = {r.profile: r for r in session.scalars(select(ApprovalPolicy).where(ApprovalPolicy.action == action))}
    row = rows.get(profile or "*") or rows.get("*")
    return _from_row(row) if row is not None else DEFAULTS[Action(action)]


def list_policies(session: Session, actor: Principal) -> list[Policy]:
    """Every stored policy, plus the built-in defaults no row overrides."""
    require_roles(actor, READERS, "reading approval policies")
    stored = [_from_row(r) for r in session.scalars(select(ApprovalPolicy).order_by(
        ApprovalPolicy.action, ApprovalPolicy.profile))]
    overridden = {(p.action, p.profile) for p in stored}
    return stored + [p for p in DEFAULTS.values() if (p.action, "*") not in overridden]


def set_policy(session: Session, actor: Principal, action: str, profile: str, body: PolicyBody) -> Policy:
    """Create or replace the policy for ``action`` on ``profile`` (``*`` for every profile)."""
    require_roles(actor, MANAGERS, "editing approval policies")
    try:
        Action(action)
    except ValueError:
        raise InvalidInput(f"action must be one of {[a.value for a in Action]}", field="action") from None
    if not body.roles <= APPROVER_ROLES:
        raise InvalidInput("approvers are admins or RA officers", field="roles")
    row = session.scalar(select(ApprovalPolicy).where(ApprovalPolicy.action == action,
                                                      ApprovalPolicy.profile == profile))
    roles = sorted(r.value for r in body.roles)
    if row is None:
        row = ApprovalPolicy(action=action, profile=profile, approvals_required=body.approvals_required,
                             roles=roles, ttl_hours=body.ttl_hours)
        session.add(row)
    else:
        row.approvals_required, row.roles, row.ttl_hours, row.updated_at = (
            body.approvals_required, roles, body.ttl_hours, utcnow())
    session.flush()
    audit.record(session, actor=actor.ref, action="approval_policy.set", target=f"policy:{action}:{profile}",
                 detail={"approvals_required": body.approvals_required, "roles": roles,
                         "ttl_hours": body.ttl_hours})
    return _from_row(row)
