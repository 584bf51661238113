"""Certificate expiry notices (exchange queue): queued by the scheduler's expiry run once it commits."""

from __future__ import annotations

from signer.jobs import services
from signer.pki import expiry


def deliver_expiry_notice(certificate_id: str, days: int) -> int:
    """Tell the certificate's people it expires soon; returns how many deliveries failed."""
    return expiry.deliver(services(), certificate_id, days)
