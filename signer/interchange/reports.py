"""Monthly exchange report per organisation: documents signed, sent and received, each status
count, and the signed share per recipient class (what the Ministry's monthly report asks for).

Months are Vietnamese calendar months (UTC+07:00). A recipient's class is its level-1 group
letter: G (ministries, central bodies), H (provinces), others as they come.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from signer.authz import READERS, require_organisation, require_roles
from signer.errors import InvalidInput
from signer.interchange.models import Incoming, OutboxItem, Outgoing
from signer.interchange.packets import VN
from signer.models import Organisation, Role
from signer.principal import Principal
from signer.signing.models import DocState, SignDocument, SignRequest

REPORTERS = READERS | {Role.CLERK}
CLASSES = {"G": "trung ương (central)", "H": "địa phương (provincial)"}


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` as [start, end) in UTC."""
    try:
        start_local = datetime.strptime(month, "%Y-%m").replace(tzinfo=VN)
    except ValueError:
        raise InvalidInput("month is YYYY-MM", field="month") from None
    year, mon = (start_local.year + 1, 1) if start_local.month == 12 else (start_local.year, start_local.month + 1)
    end_local = start_local.replace(year=year, month=mon)
    return start_local.astimezone(UTC), end_local.astimezone(UTC)


def recipient_class(code: str) -> str:
    last = code.rsplit(".", 1)[-1]
    return last[:1] if last[:1].isalpha() else "?"


def monthly(db: Session, principal: Principal, organisation_id: str, month: str) -> dict[str, Any]:
    """The report for one organisation and month."""
    require_roles(principal, REPORTERS, "reading exchange reports")
    require_organisation(db, principal, organisation_id, "organisation")
    start, end = month_bounds(month)
    org = db.get(Organisation, organisation_id)
    assert org is not None
    signed = db.scalar(select(func.count(SignDocument.id)).join(SignRequest).where(
        SignRequest.organisation_id == organisation_id, SignDocument.state == DocState.COMPLETED,
        SignDocument.completed_at >= start, SignDocument.completed_at < end)) or 0
    outgoing = list(db.scalars(select(Outgoing).where(
        Outgoing.organisation_id == organisation_id, Outgoing.business_type == 0,
        Outgoing.created_at >= start, Outgoing.created_at < end)))
    items = [i for o in outgoing for i in o.items if i.kind == "edoc"]
    per_class: dict[str, dict[str, Any]] = {}
    for o in outgoing:
        for i in (i for i in o.items if i.kind == "edoc"):
            entry = per_class.setdefault(recipient_class(i.recipient), {"documents": 0, "signed": 0})
            entry["documents"] += 1
            entry["signed"] += o.sign_request_id is not None
    for letter, entry in per_class.items():
        entry["label"] = CLASSES.get(letter, letter)
        entry["signed_share"] = round(entry["signed"] / entry["documents"], 4) if entry["documents"] else None
    incoming = list(db.scalars(select(Incoming).where(
        Incoming.organisation_id == organisation_id, Incoming.received_at >= start, Incoming.received_at < end)))
    answered = Counter(db.scalars(select(OutboxItem.status_code).where(
        OutboxItem.organisation_id == organisation_id, OutboxItem.kind == "status",
        OutboxItem.created_at >= start, OutboxItem.created_at < end)).all())
    return {
        "organisation": {"id": org.id, "code": org.code, "name": org.name}, "month": month,
        "signed_documents": signed,
        "sent": {
            "documents": len(outgoing), "deliveries": len(items),
            "delivery_states": dict(Counter(i.state for i in items)),
            "statuses": dict(Counter(i.status or "none" for i in items)),
            "signed_share": round(sum(o.sign_request_id is not None for o in outgoing) / len(outgoing), 4)
            if outgoing else None,
            "by_recipient_class": per_class,
        },
        "received": {
            "documents": len(incoming),
            "verdicts": dict(Counter(i.verdict for i in incoming)),
            "states": dict(Counter(i.state for i in incoming)),
            "signed_share": round(sum(i.verdict != "invalid" for i in incoming) / len(incoming), 4)
            if incoming else None,
            "statuses_sent": dict(answered),
        },
    }
