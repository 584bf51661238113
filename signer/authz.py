"""Authorisation rules shared by the API and the CLI: roles, scopes and organisation scope.

People see their own organisation; admins, RA officers and auditors also see the organisations
below theirs. API clients act for exactly one organisation.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from signer.errors import Forbidden, NotFound
from signer.models import Organisation, Role
from signer.principal import Principal

MANAGERS = frozenset({Role.ADMIN})
READERS = frozenset({Role.ADMIN, Role.RA_OFFICER, Role.AUDITOR})
API_SCOPES = frozenset({"sign", "verify", "exchange", "read"})


def subtree(session: Session, root_id: str) -> set[str]:
    """``root_id`` and every organisation below it."""
    found, frontier = {root_id}, [root_id]
    while frontier:
        children = session.scalars(
            select(Organisation.id).where(Organisation.parent_id.in_(frontier))
        ).all()
        frontier = [c for c in children if c not in found]
        found.update(frontier)
    return found


def visible_organisations(session: Session, principal: Principal) -> set[str] | None:
    """Organisation ids ``principal`` may see; ``None`` means all (the system actor)."""
    if principal.kind == "system":
        return None
    if principal.organisation_id is None:
        return set()
    if principal.kind == "user" and principal.has_any_role(READERS):
        return subtree(session, principal.organisation_id)
    return {principal.organisation_id}


def require_roles(principal: Principal, roles: frozenset[Role], action: str) -> None:
    if principal.kind == "system":
        return
    if principal.kind != "user" or not principal.has_any_role(roles):
        wanted = ", ".join(sorted(roles))
        raise Forbidden(f"{action} needs one of the roles: {wanted}")


def require_scope(principal: Principal, scope: str) -> None:
    if principal.kind == "api_client" and scope not in principal.scopes:
        raise Forbidden(f"this API key lacks the {scope!r} scope")


def require_organisation(session: Session, principal: Principal, organisation_id: str,
                         what: str = "resource") -> None:
    """404 (not 403) outside the principal's organisations: do not reveal what exists."""
    visible = visible_organisations(session, principal)
    if visible is not None and organisation_id not in visible:
        raise NotFound(f"{what} not found")
