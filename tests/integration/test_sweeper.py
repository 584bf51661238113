"""The scheduler's signing tasks: lost webhooks are resent, CRLs are refreshed before they lapse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import hsm
from signer.queues import EXCHANGE, HSM, queue
from signer.services import Services
from signer.signing import sweeper
from signer.signing.models import SignRequest, WebhookDelivery
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.signing_support import make_signing_world


def test_crls_are_refreshed_before_next_update(services: Services, world: World, token: hsm.Hsm) -> None:
    assert sweeper.refresh_crls(services) is False  # no built-in CA yet
    make_signing_world(services, world, token, "ec-p256")
    assert sweeper.refresh_crls(services) is False  # fresh CRLs: nothing to do
    soon = datetime.now(UTC) + timedelta(days=6)
    assert sweeper.refresh_crls(services, now=soon) is True
    assert "refresh-crls" in queue(services, HSM).get_job_ids()
    from sqlalchemy import func, select

    from signer.signing.models import Crl

    with services.db.session() as s:
        before = s.scalar(select(func.count()).select_from(Crl))
    run_hsm_worker(services, burst=True)
    with services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Crl)) == (before or 0) + 2  # root and issuing


def test_pending_webhooks_are_resent(services: Services, world: World, token: hsm.Hsm) -> None:
    sw = make_signing_world(services, world, token, "ec-p256")
    with services.db.session() as s:
        request = SignRequest(organisation_id=world.office, api_client_id=_client_id(s, world),
                              credential_id=sw.leader_credential, state="CANCELLED", body_sha256="0" * 64,
                              challenge="0" * 64, verification_code="0000",
                              expires_at=datetime.now(UTC), callback_url="http://127.0.0.1:9/hook")
        s.add(request)
        s.flush()
        delivery = WebhookDelivery(request_id=request.id, event="sign_request.cancelled",
                                   url="http://127.0.0.1:9/hook", created_at=datetime.now(UTC) - timedelta(hours=2))
        s.add(delivery)
        s.flush()
        delivery_id = delivery.id
    assert sweeper.resend_webhooks(services) == [delivery_id]
    assert f"webhook-{delivery_id}" in queue(services, EXCHANGE).get_job_ids()


def _client_id(session: object, world: World) -> str:
    from sqlalchemy import select

    from signer.models import ApiClient

    key_id = world.api_key.split("_")[1]
    return str(session.scalar(select(ApiClient.id).where(ApiClient.key_id == key_id)))  # type: ignore[attr-defined]
