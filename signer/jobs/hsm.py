"""Jobs for the hsm queue (run only by the non-forking hsm worker, which holds the PIN)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from signer.jobs import services


def token_status() -> dict[str, Any]:
    """Describe the token as the hsm worker sees it (used by readiness and ``hsm-status``)."""
    return asdict(services().hsm().status())
