"""Certificate lifecycle jobs for the hsm worker (key generation, CSRs, issuing, revocation)."""

from __future__ import annotations

from signer.jobs import services


def execute_request(request_id: str) -> str:
    """Carry out one approved certificate request; returns its final status."""
    from signer.lifecycle.executor import Context, execute

    svc = services()
    return execute(Context(svc.db, svc.hsm(), svc.settings.public_url), request_id)
