"""The key holder's view: requests waiting for their decision and their recent decisions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from signer.models import Credential, CredentialKind, Role, User
from signer.signing.models import RequestState, SignRequest


def pending_for(session: Session, user: User, now: datetime | None = None) -> list[SignRequest]:
    """Requests awaiting approval that ``user`` may approve, newest first (unexpired only)."""
    now = now or datetime.now(UTC)
    may = and_(Credential.kind == CredentialKind.PERSONAL.value, Credential.owner_user_id == user.id)
    if Role.CLERK in user.roles:
        may = or_(may, and_(Credential.kind == CredentialKind.ORGANISATION.value,
                            Credential.organisation_id == user.organisation_id))
    query = (select(SignRequest).join(Credential, Credential.id == SignRequest.credential_id)
             .where(SignRequest.state == RequestState.AWAITING_APPROVAL.value, SignRequest.expires_at > now, may)
             .options(selectinload(SignRequest.documents))
             .order_by(SignRequest.created_at.desc()))
    return list(session.scalars(query)) if user.active else []


def decisions_of(session: Session, user: User, limit: int = 50) -> list[SignRequest]:
    """The holder's last ``limit`` decisions (approved, refused, wrong code), newest first."""
    query = (select(SignRequest).where(SignRequest.decided_by == user.id)
             .options(selectinload(SignRequest.documents))
             .order_by(SignRequest.decided_at.desc()).limit(limit))
    return list(session.scalars(query))
