"""The lifecycle end to end on a live service and a real hsm worker process: a revocation
requested and approved over the admin API reaches OCSP (openssl) within one second of the
approval; an approved request whose job was lost is queued again by the scheduler's sweep."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp as x509_ocsp

import hsm
from signer.lifecycle import sweeper
from signer.queues import HSM, queue
from signer.services import Services
from signer.signing.material import authority
from tests.conftest import World
from tests.integration.test_lifecycle import issue_body, login, ra, submit
from tests.integration.test_ocsp import _leader_cert, _openssl_ocsp, _pem
from tests.live import Served
from tests.signing_support import SigningWorld, make_signing_world
from tests.support import SoftHsm, hsm_worker_processes

pytestmark = pytest.mark.live


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm, served: Served) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def _issuer(services: Services, slug: str) -> x509.Certificate:
    with services.db.session() as s:
        row = authority(s, slug)
        assert row is not None
        return x509.load_der_x509_certificate(row.certificate_der)


def _status(served: Served, cert: x509.Certificate, issuer: x509.Certificate) -> x509_ocsp.OCSPCertStatus:
    body = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        Encoding.DER)
    req = urllib.request.Request(served.ocsp_url, data=body, headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return x509_ocsp.load_der_ocsp_response(resp.read()).certificate_status


def test_revocation_approved_over_the_api_reaches_ocsp_within_a_second(
        client: Any, services: Services, sw: SigningWorld, served: Served, softhsm: SoftHsm, tmp_path: Path) -> None:
    world = sw.world
    leaf, issuing, root = _leader_cert(services, sw), _issuer(services, "issuing"), _issuer(services, "root")
    files = [_pem(tmp_path / "issuing.pem", issuing), _pem(tmp_path / "leaf.pem", leaf),
             _pem(tmp_path / "root.pem", root)]
    assert ": good" in _openssl_ocsp(served, *files)

    login(client, world, "office-ra")
    created = client.post("/v1/admin/certificate-requests", json={
        "action": "revoke", "organisation_id": world.office, "credential_ids": [sw.leader_credential],
        "reason": "keyCompromise"})
    assert created.status_code == 201, created.json
    with hsm_worker_processes(services, softhsm, 1):
        login(client, world, "office-admin")
        approved = client.post(f"/v1/admin/certificate-requests/{created.json['id']}/approve")
        assert approved.status_code == 200 and approved.json["status"] == "approved"
        start = time.monotonic()
        while _status(served, leaf, issuing) != x509_ocsp.OCSPCertStatus.REVOKED:
            assert time.monotonic() - start < 10, "the revocation never reached OCSP"
            time.sleep(0.02)
        elapsed = time.monotonic() - start
    assert elapsed < 1.0, f"revoked in OCSP {elapsed:.2f} s after the approval"
    out = _openssl_ocsp(served, *files)
    assert ": revoked" in out and "Reason: keyCompromise" in out and "Response verify OK" in out
    assert client.get(f"/v1/admin/certificate-requests/{created.json['id']}").json["status"] == "completed"


def test_sweep_requeues_an_approved_request_whose_job_was_lost(services: Services, sw: SigningWorld,
                                                              token: hsm.Hsm) -> None:
    from datetime import UTC, datetime, timedelta

    from signer.lifecycle.models import CertificateRequest
    from tests.integration.test_lifecycle import admin, decide

    world = sw.world
    rid = submit(services, ra(world), issue_body(world))
    decide(services, admin(world), rid)  # no dispatcher in this session: nothing is queued
    hsm_queue = queue(services, HSM)
    hsm_queue.empty()
    assert sweeper.sweep(services) == {"expired": 0, "requeued": 0}  # too recent to be lost
    with services.db.session() as s:
        request = s.get(CertificateRequest, rid)
        assert request is not None
        request.decided_at = datetime.now(UTC) - timedelta(minutes=5)
    assert sweeper.sweep(services) == {"expired": 0, "requeued": 1}
    assert [job.args for job in hsm_queue.jobs] == [(rid,)]
