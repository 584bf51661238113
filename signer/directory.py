"""Workflows for organisations, people and API clients. No Flask here: the API and the CLI both
call these with a :class:`~signer.principal.Principal` and a database session."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange import organ_id
from signer import audit
from signer.authz import (
    API_SCOPES,
    MANAGERS,
    READERS,
    require_organisation,
    require_roles,
    visible_organisations,
)
from signer.errors import Conflict, Forbidden, InvalidInput, NotFound
from signer.models import ApiClient, Organisation, Role, User, UserRole, utcnow
from signer.principal import Principal
from signer.secretbox import SecretBox
from signer.security import IssuedApiKey, Passwords, api_key_matches, issue_api_key, parse_api_key

MIN_PASSWORD = 12
USE_RECORD_INTERVAL_S = 60  # api_clients.last_used_at is recorded at most this often


def _flush_unique(session: Session, what: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"{what} already exists") from None


# -- organisations -----------------------------------------------------------------------------


def create_organisation(session: Session, actor: Principal, *, code: str, name: str,
                        parent_id: str | None = None) -> Organisation:
    """Create an organisation; top-level ones only from the CLI (system actor)."""
    require_roles(actor, MANAGERS, "creating an organisation")
    try:
        organ_id.validate(code)
    except organ_id.InvalidOrganId as exc:
        raise InvalidInput(str(exc), field="code") from None
    if parent_id is None:
        if actor.kind != "system":
            raise Forbidden("top-level organisations are created with `signer create-org`")
    else:
        parent = get_organisation(session, actor, parent_id)
        if parent.code not in organ_id.ancestors(code):
            raise InvalidInput(f"{code} is not below {parent.code}", field="parent_id")
    if session.scalar(select(Organisation.id).where(Organisation.code == code)):
        raise Conflict(f"organisation {code} already exists")
    org = Organisation(code=code, name=name.strip(), parent_id=parent_id)
    session.add(org)
    _flush_unique(session, f"organisation {code}")
    audit.record(session, actor=actor.ref, action="organisation.create", target=f"organisation:{org.id}",
                 organisation_id=org.id, detail={"code": code, "parent_id": parent_id})
    return org


def get_organisation(session: Session, actor: Principal, organisation_id: str) -> Organisation:
    org = session.get(Organisation, organisation_id)
    if org is None:
        raise NotFound("organisation not found")
    require_organisation(session, actor, org.id, "organisation")
    return org


def list_organisations(session: Session, actor: Principal) -> list[Organisation]:
    visible = visible_organisations(session, actor)
    query = select(Organisation).order_by(Organisation.code)
    if visible is not None:
        query = query.where(Organisation.id.in_(visible))
    return list(session.scalars(query))


def find_organisation_by_code(session: Session, code: str) -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.code == code))
    if org is None:
        raise NotFound(f"organisation {code} not found")
    return org


# -- people ------------------------------------------------------------------------------------


def create_user(session: Session, passwords: Passwords, actor: Principal, *, username: str,
                full_name: str, organisation_id: str, roles: set[Role], password: str | None,
                email: str | None = None) -> User:
    """Create a person with roles in one organisation the actor manages."""
    require_roles(actor, MANAGERS, "creating a user")
    get_organisation(session, actor, organisation_id)
    if not roles:
        raise InvalidInput("a user needs at least one role", field="roles")
    if password is not None and len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters", field="password")
    if session.scalar(select(User.id).where(User.username == username)):
        raise Conflict(f"user {username} already exists")
    user = User(username=username, full_name=full_name.strip(), email=email,
                organisation_id=organisation_id,
                password_hash=passwords.hash(password) if password else None,
                role_rows=[UserRole(role=r.value) for r in sorted(roles)])
    session.add(user)
    _flush_unique(session, f"user {username}")
    audit.record(session, actor=actor.ref, action="user.create", target=f"user:{user.id}",
                 organisation_id=organisation_id,
                 detail={"username": username, "roles": sorted(r.value for r in roles)})
    return user


def get_user(session: Session, actor: Principal, user_id: str) -> User:
    if actor.kind == "user" and actor.id == user_id:
        user = session.get(User, user_id)
    else:
        require_roles(actor, READERS, "reading users")
        user = session.get(User, user_id)
        if user is not None:
            require_organisation(session, actor, user.organisation_id, "user")
    if user is None:
        raise NotFound("user not found")
    return user


def list_users(session: Session, actor: Principal, organisation_id: str | None = None) -> list[User]:
    require_roles(actor, READERS, "listing users")
    query = select(User).order_by(User.username)
    visible = visible_organisations(session, actor)
    if organisation_id is not None:
        require_organisation(session, actor, organisation_id, "organisation")
        query = query.where(User.organisation_id == organisation_id)
    elif visible is not None:
        query = query.where(User.organisation_id.in_(visible))
    return list(session.scalars(query))


def authenticate_password(session: Session, passwords: Passwords, username: str,
                          password: str) -> User | None:
    """The active user with these credentials, or ``None`` (same cost either way)."""
    user = session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None and user.active else None
    if not passwords.verify(stored, password) or user is None:
        return None
    if stored and passwords.needs_rehash(stored):
        user.password_hash = passwords.hash(password)
    return user


# -- API clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewApiClient:
    client: ApiClient
    key: IssuedApiKey
    webhook_secret: str | None = None  # shown once, like the key; stored sealed


def create_api_client(session: Session, actor: Principal, *, name: str, organisation_id: str,
                      scopes: set[str], webhook_box: SecretBox | None = None) -> NewApiClient:
    """Register a document system; the returned key is shown once and never stored."""
    require_roles(actor, MANAGERS, "creating an API client")
    get_organisation(session, actor, organisation_id)
    unknown = scopes - API_SCOPES
    if unknown or not scopes:
        raise InvalidInput(f"scopes must be a non-empty subset of {sorted(API_SCOPES)}", field="scopes")
    key = issue_api_key()
    webhook_secret = secrets.token_urlsafe(32) if webhook_box is not None else None
    client = ApiClient(name=name.strip(), organisation_id=organisation_id, key_id=key.key_id,
                       key_hash=key.key_hash, scopes=" ".join(sorted(scopes)),
                       webhook_secret=webhook_box.seal(webhook_secret) if webhook_box and webhook_secret
                       else None)
    session.add(client)
    session.flush()
    audit.record(session, actor=actor.ref, action="api_client.create", target=f"api_client:{client.id}",
                 organisation_id=organisation_id,
                 detail={"name": client.name, "key_id": key.key_id, "scopes": sorted(scopes)})
    return NewApiClient(client, key, webhook_secret)


def list_api_clients(session: Session, actor: Principal) -> list[ApiClient]:
    require_roles(actor, READERS, "listing API clients")
    query = select(ApiClient).order_by(ApiClient.name)
    visible = visible_organisations(session, actor)
    if visible is not None:
        query = query.where(ApiClient.organisation_id.in_(visible))
    return list(session.scalars(query))


def authenticate_api_key(session: Session, token: str) -> ApiClient | None:
    """The active client holding ``token``, or ``None``."""
    parsed = parse_api_key(token)
    if parsed is None:
        return None
    key_id, secret = parsed
    client = session.scalar(select(ApiClient).where(ApiClient.key_id == key_id))
    if client is None or not client.active or not api_key_matches(client.key_hash, secret):
        return None
    # Reads only: a request that is then denied must write nothing but its audit row, so use is
    # recorded after a successful response (record_api_client_use).
    return client


def api_client_use_due(last_used_at: datetime | None, now: datetime | None = None) -> bool:
    """Whether ``last_used_at`` is stale enough to be recorded again (once a minute, so a busy
    document system does not write on every call)."""
    if last_used_at is None:
        return True
    now = now or utcnow()
    if last_used_at.tzinfo is None:  # SQLite hands back naive UTC
        last_used_at = last_used_at.replace(tzinfo=UTC)
    return (now - last_used_at).total_seconds() > USE_RECORD_INTERVAL_S


def record_api_client_use(session: Session, client_id: str, now: datetime | None = None) -> bool:
    """Set ``last_used_at`` unless another request did so in the last minute; one conditional
    UPDATE, so concurrent requests record at most once. True when this call wrote."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=USE_RECORD_INTERVAL_S)
    result = session.execute(
        update(ApiClient)
        .where(ApiClient.id == client_id,
               or_(ApiClient.last_used_at.is_(None), ApiClient.last_used_at < cutoff))
        .values(last_used_at=now)
        .execution_options(synchronize_session=False))
    return bool(getattr(result, "rowcount", 0))
