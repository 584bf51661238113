"""Kill the hsm worker during a batch and start another: every document ends COMPLETED exactly
once, and no request stays in SIGNING."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import hsm
from signer.audit import Outcome
from signer.models import AuditEvent
from signer.services import Services
from signer.settings import Settings
from signer.signing import sweeper
from signer.signing.models import DocState, SignDocument, SignRequest
from tests.conftest import World
from tests.images import signature_png
from tests.pdfs import decision_pdf
from tests.signing_support import approve, make_signing_world
from tests.support import SoftHsm, worker_env

LEASE_S = 2


@pytest.fixture
def short_lease(settings: Settings) -> Settings:
    return settings.model_copy(update={"signing_lease_s": LEASE_S})


def _worker(settings: Settings, softhsm: SoftHsm, log: Path) -> subprocess.Popen[bytes]:
    env = worker_env(settings, softhsm)
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "signer.cli", "worker", "hsm"], env=env,
                                stdout=subprocess.DEVNULL, stderr=out)


def _wait(predicate: Callable[[], bool], timeout: float = 120.0,
          message: Callable[[], str] = lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out\n{message()}"
        time.sleep(0.05)


def _completed(services: Services, request_id: str) -> int:
    with services.db.session() as s:
        return s.scalar(select(func.count()).select_from(SignDocument).where(
            SignDocument.request_id == request_id, SignDocument.state == DocState.COMPLETED.value)) or 0


def test_killed_worker_mid_batch(short_lease: Settings, services: Services, world: World, token: hsm.Hsm,
                                 softhsm: SoftHsm, client: Any, tmp_path: Path) -> None:
    services.settings = short_lease
    sw = make_signing_world(services, world, token, "rsa-2048")
    client.post("/v1/session", json={"username": "office-admin", "password": world.password})
    client.put(f"/v1/credentials/{sw.leader_credential}/images/signature", data=signature_png(),
               content_type="image/png")
    client.delete("/v1/session")
    pdf = base64.b64encode(decision_pdf()).decode()
    docs = [{"name": f"VB {i}", "format": "pades", "profile": "approved", "level": "B-B", "content": pdf,
             "placement": {"anchor": "Nguyễn Văn An"}} for i in range(40)]
    req = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": docs},
                      headers={"Authorization": f"Bearer {world.api_key}"}).json
    assert approve(client, world, sw.leader, req).status_code == 202

    log = tmp_path / "workers.log"
    first = _worker(short_lease, softhsm, log)
    try:
        _wait(lambda: _completed(services, req["id"]) >= 3)
    finally:
        first.send_signal(signal.SIGKILL)  # no warm shutdown: the batch is cut mid-way
        first.wait(30)
    done_before = _completed(services, req["id"])
    assert done_before < 40
    with services.db.session() as s:
        request = s.get(SignRequest, req["id"])
        assert request is not None and request.state == "SIGNING"

    second = _worker(short_lease, softhsm, log)
    try:
        time.sleep(LEASE_S + 0.5)  # the killed worker's lease runs out
        assert sweeper.resume_signing(services) == [req["id"]]  # what the scheduler does
        _wait(lambda: _final(services, req["id"]), message=lambda: log.read_text(errors="replace")[-4000:])
    finally:
        second.terminate()
        second.wait(30)

    with services.db.session() as s:
        request = s.get(SignRequest, req["id"])
        assert request is not None
        assert (request.state, request.result) == ("COMPLETED", "OK")
        assert all(d.state == DocState.COMPLETED.value and d.output_blob for d in request.documents)
        signed = s.scalars(select(AuditEvent.target).where(AuditEvent.action == "document.sign",
                                                           AuditEvent.outcome == Outcome.SUCCESS)).all()
    doc_targets = [f"sign_document:{d['id']}" for d in req["documents"]]
    assert sorted(t for t in signed if t in doc_targets) == sorted(doc_targets)  # each exactly once


def _final(services: Services, request_id: str) -> bool:
    with services.db.session() as s:
        request = s.get(SignRequest, request_id)
        return request is not None and request.state != "SIGNING"
