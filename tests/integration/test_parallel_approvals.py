"""Approvals raced in parallel: the same device signature posted twice at once is accepted once;
one approval finished by several hsm workers at once signs each document once and is consumed
once."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

import hsm
from signer.models import AuditEvent
from signer.services import Services
from signer.signing import challenge as chal
from signer.signing.dispatch import Dispatcher
from signer.signing.models import Approval
from tests.conftest import World
from tests.signing_support import PIN, SigningWorld, device_signature, make_signing_world, recompute_challenge
from tests.support import SoftHsm, hsm_worker_processes


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def _create(client: Any, sw: SigningWorld, count: int) -> dict[str, Any]:
    docs = [{"name": f"h{n}", "format": "raw", "hash": f"{n:064x}"} for n in range(count)]
    resp = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": docs},
                       headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 202
    return dict(resp.json)


def test_the_same_approval_posted_twice_at_once_counts_once(app: Flask, services: Services,
                                                            sw: SigningWorld) -> None:
    req = _create(app.test_client(), sw, 1)
    c = recompute_challenge(req)
    body = {"device_id": sw.leader.device_id, "challenge": c.hex(), "signature": device_signature(sw.leader, c),
            "pin": PIN, "verification_code": chal.verification_code(c)}
    barrier, statuses = threading.Barrier(2), []

    def post() -> None:
        client = app.test_client()
        client.post("/v1/session", json={"username": sw.leader.username, "password": sw.world.password})
        barrier.wait(10)
        statuses.append(client.post(f"/v1/sign-requests/{req['id']}/approval", json=body).status_code)

    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses)[0] == 202 and sorted(statuses)[1] in (200, 409)  # never a 500
    with services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Approval).where(Approval.request_id == req["id"])) == 1


def test_one_approval_finished_by_three_jobs_on_two_workers_signs_once(
        client: Any, services: Services, sw: SigningWorld, softhsm: SoftHsm) -> None:
    from tests.signing_support import approve

    req = _create(client, sw, 300)
    with hsm_worker_processes(services, softhsm, 2):
        assert approve(client, sw.world, sw.leader, req).status_code == 202
        Dispatcher(services).finish(req["id"], jobs=2)  # more finishing jobs than needed, at once
        headers = {"Authorization": f"Bearer {sw.world.api_key}"}
        deadline = time.monotonic() + 120
        view = client.get(f"/v1/sign-requests/{req['id']}?wait=60", headers=headers).json
        while view["state"] == "SIGNING" and time.monotonic() < deadline:
            view = client.get(f"/v1/sign-requests/{req['id']}?wait=5", headers=headers).json
        assert view["state"] == "COMPLETED"
    with services.db.session() as s:
        target = f"sign_request:{req['id']}"
        consumed = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "approval.consume", AuditEvent.target == target))
        signed = [h for d in s.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "hashes.sign", AuditEvent.target == target)) for h in json.loads(d)["dtbsr"]]
    assert consumed == 1
    assert sorted(signed) == sorted(d["dtbsr"] for d in req["documents"])  # each exactly once
