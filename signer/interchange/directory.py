"""The axis directory of connected units, kept in the database (``axis_units``).

Recipients are checked against it before a send is accepted. The scheduler refreshes it hourly
through any organisation's account (the directory is the same for every system id).
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from signer.errors import Conflict
from signer.interchange.accounts import accounts, transport_for
from signer.interchange.models import AxisUnit
from signer.models import utcnow
from signer.services import Services

log = logging.getLogger(__name__)


def sync(services: Services) -> int:
    """Replace the stored directory with the axis's current one; returns the number of units."""
    with services.db.session(readonly=True) as db:
        first = next(iter(accounts(db)), None)
        if first is None:
            raise Conflict("no organisation has an axis account yet: `signer axis account` sets one")
        transport = transport_for(services, db, first.organisation_id)
    agencies = [a for a in transport.agencies() if not a.deleted]
    codes_by_id = {a.id: a.code for a in agencies}
    now = utcnow()
    with services.db.session() as db:
        db.execute(delete(AxisUnit))
        for a in agencies:
            db.add(AxisUnit(code=a.code, unit_id=a.id, name=a.name[:500], mail=a.mail[:255],
                            parent_code=codes_by_id.get(a.pid), synced_at=now))
    log.info("axis directory: %d units", len(agencies))
    return len(agencies)


def sync_if_missing(services: Services, codes: list[str]) -> None:
    """A send to a unit that joined the axis since the last hourly sync still finds it."""
    with services.db.session(readonly=True) as db:
        known = set(db.scalars(select(AxisUnit.code).where(AxisUnit.code.in_(codes))))
        has_account = bool(accounts(db))
    if has_account and set(codes) - known:
        sync(services)


def units(db: Session) -> list[AxisUnit]:
    return list(db.scalars(select(AxisUnit).order_by(AxisUnit.code)))
