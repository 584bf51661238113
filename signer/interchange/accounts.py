"""Axis accounts (an organisation's system id and shared secret) and the transport built from one.

Secrets are sealed in the database with the service's key (``SecretBox("axis")``) and opened only
in the exchange worker and the CLI; they never reach a log, an audit detail or an API answer.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange.axis.client import AxisClient
from exchange.transport import Transport
from signer import audit
from signer.authz import MANAGERS, require_organisation, require_roles
from signer.errors import Conflict, InvalidInput, NotFound
from signer.interchange.models import AxisAccount
from signer.models import Organisation
from signer.principal import Principal
from signer.secretbox import SecretBox
from signer.services import Services

MIN_SECRET = 16


def _box(services: Services) -> SecretBox:
    return SecretBox(services.settings.require_secret_key(), "axis")


def set_account(db: Session, services: Services, actor: Principal, *, organisation_id: str, system_id: str,
                secret: str, endpoint: str | None = None) -> AxisAccount:
    """Create or replace an organisation's axis account (admins of that organisation, or the CLI)."""
    require_roles(actor, MANAGERS, "setting an axis account")
    require_organisation(db, actor, organisation_id, "organisation")
    if not system_id.strip() or len(system_id) > 64:
        raise InvalidInput("system_id must be 1-64 characters", field="system_id")
    if len(secret) < MIN_SECRET:
        raise InvalidInput(f"the axis secret must hold at least {MIN_SECRET} characters", field="secret")
    taken = db.scalar(select(AxisAccount).where(AxisAccount.system_id == system_id,
                                                AxisAccount.organisation_id != organisation_id))
    if taken is not None:
        raise Conflict(f"system id {system_id} already belongs to another organisation")
    account = db.get(AxisAccount, organisation_id)
    if account is None:
        account = AxisAccount(organisation_id=organisation_id, system_id=system_id, secret_sealed="")
        db.add(account)
    account.system_id, account.endpoint = system_id, endpoint
    account.secret_sealed = _box(services).seal(secret)
    db.flush()
    audit.record(db, actor=actor.ref, action="axis.account.set", target=f"organisation:{organisation_id}",
                 organisation_id=organisation_id, detail={"system_id": system_id, "endpoint": endpoint})
    return account


def accounts(db: Session) -> list[AxisAccount]:
    return list(db.scalars(select(AxisAccount).order_by(AxisAccount.system_id)))


def organisation_code(db: Session, organisation_id: str) -> str:
    org = db.get(Organisation, organisation_id)
    if org is None:
        raise NotFound("organisation not found")
    return org.code


def transport_for(services: Services, db: Session, organisation_id: str) -> Transport:
    """The transport this organisation talks to the axis through (its own system id and secret)."""
    account = db.get(AxisAccount, organisation_id)
    if account is None:
        raise Conflict("this organisation has no axis account: `signer axis account` sets one")
    settings = services.settings
    return AxisClient(account.endpoint or settings.effective_axis_url, account.system_id,
                      _box(services).open(account.secret_sealed), timeout_s=settings.axis_timeout_s,
                      attempts=settings.axis_attempts, backoff_s=settings.axis_backoff_s)
