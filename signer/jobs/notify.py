"""Holder notifications (exchange queue): after a sign request is created or changes state."""

from __future__ import annotations

from signer import notify
from signer.jobs import services


def notify_request(request_id: str) -> int:
    """Tell the request's holders; returns how many deliveries failed (never raises for them)."""
    return notify.notify_request(services(), request_id)
