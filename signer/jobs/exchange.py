"""Exchange jobs (exchange queue): deliver one outbox row, poll the axis for one organisation,
synchronise the axis directory. Each takes ids only; the database holds the rest."""

from __future__ import annotations

from signer.interchange import delivery, directory, receiving
from signer.jobs import services


def deliver_item(item_id: str) -> str:
    """One delivery attempt of an outbox row; returns its state afterwards."""
    return delivery.deliver(services(), item_id)


def poll_organisation(organisation_id: str) -> dict[str, int]:
    """Fetch and handle everything the axis holds for one organisation."""
    report = receiving.poll(services(), organisation_id)
    return {"documents": report.documents, "duplicates": report.duplicates, "statuses": report.statuses,
            "follow_ups": report.follow_ups, "refused": len(report.refused)}


def sync_directory() -> int:
    """Refresh the directory of connected units; returns how many units it holds."""
    return directory.sync(services())
