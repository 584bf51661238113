"""Sign-hash batches: 1,000 hashes after one approval, signed in chunks with one audit row each,
signatures inline in the request view; a chunk abandoned by a dead worker is signed once, and a
worker whose lease moved on changes nothing; two hsm worker processes share one batch."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from base64 import b64decode
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes as crypto_hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import select, update

import hsm
from signer.models import AuditEvent
from signer.services import Services
from signer.signing import hashes, sweeper
from signer.signing.dispatch import Dispatcher
from signer.signing.models import DocState, SignDocument
from signer.workers import run_hsm_worker
from tests.conftest import World
from tests.signing_support import SigningWorld, approve, credential, make_signing_world
from tests.support import SoftHsm, hsm_worker_processes


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "rsa-2048")


def _digests(count: int, tag: str) -> list[bytes]:
    return [hashlib.sha256(f"{tag} {n}".encode()).digest() for n in range(count)]


def _create(client: Any, sw: SigningWorld, digests: list[bytes]) -> dict[str, Any]:
    docs = [{"name": f"hash {n + 1}", "format": "raw", "hash": d.hex()} for n, d in enumerate(digests)]
    resp = client.post("/v1/sign-requests", json={"credential_id": sw.leader_credential, "documents": docs},
                       headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 202, resp.json
    return dict(resp.json)


def _view(client: Any, sw: SigningWorld, request_id: str) -> dict[str, Any]:
    resp = client.get(f"/v1/sign-requests/{request_id}", headers={"Authorization": f"Bearer {sw.world.api_key}"})
    assert resp.status_code == 200
    return dict(resp.json)


def _public_key(services: Services, sw: SigningWorld) -> rsa.RSAPublicKey:
    public = load_der_public_key(credential(services, sw.leader_credential).public_key_der)
    assert isinstance(public, rsa.RSAPublicKey)
    return public


def _check_signatures(public: rsa.RSAPublicKey, view: dict[str, Any], digests: list[bytes]) -> list[bytes]:
    assert view["state"] == "COMPLETED", view
    signatures = [b64decode(d["signature"]) for d in view["documents"]]
    for signature, digest in zip(signatures, digests, strict=True):
        public.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(crypto_hashes.SHA256()))
    return signatures


def _signed_in_audit(services: Services, request_id: str) -> list[list[str]]:
    with services.db.session() as s:
        rows = s.scalars(select(AuditEvent.detail).where(AuditEvent.action == "hashes.sign",
                                                         AuditEvent.target == f"sign_request:{request_id}")
                         .order_by(AuditEvent.seq)).all()
    return [json.loads(detail)["dtbsr"] for detail in rows]


def test_a_batch_of_1000_hashes_after_one_approval(client: Any, services: Services, sw: SigningWorld,
                                                   tmp_path: Path) -> None:
    digests = _digests(1000, "batch")
    req = _create(client, sw, digests)
    assert [d["dtbsr"] for d in req["documents"]] == [d.hex() for d in digests]
    assert approve(client, sw.world, sw.leader, req).status_code == 202
    files_before = sum(1 for p in services.blobs.root.rglob("*") if p.is_file())
    run_hsm_worker(services, burst=True)

    view = _view(client, sw, req["id"])
    public = _public_key(services, sw)
    signatures = _check_signatures(public, view, digests)
    # Stored in the rows, not as 1,000 blob files; the download link serves the same bytes.
    assert sum(1 for p in services.blobs.root.rglob("*") if p.is_file()) == files_before
    last = view["documents"][-1]
    assert client.get(last["signed_url"], headers={"Authorization": f"Bearer {sw.world.api_key}"}).data \
        == signatures[-1]
    # One audit row per chunk, together naming every hash exactly once, in order.
    chunks = _signed_in_audit(services, req["id"])
    assert [len(c) for c in chunks] == [hashes.CHUNK] * (1000 // hashes.CHUNK)
    assert [h for c in chunks for h in c] == [d.hex() for d in digests]

    # An independent verifier: openssl on one signature (PKCS#1 v1.5 over the DigestInfo).
    (tmp_path / "pub.pem").write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "sig.bin").write_bytes(signatures[0])
    (tmp_path / "digest.bin").write_bytes(digests[0])
    out = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"),
                          "-in", str(tmp_path / "digest.bin"), "-sigfile", str(tmp_path / "sig.bin"),
                          "-pkeyopt", "digest:sha256"], capture_output=True, text=True, check=False)
    assert out.returncode == 0 and "Signature Verified Successfully" in out.stdout, out.stderr


def test_a_chunk_abandoned_by_a_dead_worker_is_signed_once(client: Any, services: Services,
                                                            sw: SigningWorld) -> None:
    digests = _digests(2 * hashes.CHUNK + 10, "recovery")
    req = _create(client, sw, digests)
    assert approve(client, sw.world, sw.leader, req).status_code == 202
    ids = [d["id"] for d in req["documents"]]
    # A worker claimed the second chunk and died: its lease still runs, so this pass leaves it alone.
    dead_token, claimed = hashes._claim(services, ids[hashes.CHUNK:2 * hashes.CHUNK])
    assert len(claimed) == hashes.CHUNK
    run_hsm_worker(services, burst=True)
    view = _view(client, sw, req["id"])
    assert view["state"] == "SIGNING"
    assert [d["state"] for d in view["documents"]].count("SIGNING") == hashes.CHUNK

    # The lease runs out; the sweeper finds the request idle and the next pass signs the rest.
    past = datetime.now(UTC) - timedelta(seconds=1)
    with services.db.session() as s:
        s.execute(update(SignDocument).where(SignDocument.lease_token == dead_token).values(lease_until=past))
    later = datetime.now(UTC) + timedelta(seconds=services.settings.signing_lease_s + 1)
    assert sweeper.resume_signing(services, now=later) == [req["id"]]
    run_hsm_worker(services, burst=True)
    view = _view(client, sw, req["id"])
    signatures = _check_signatures(_public_key(services, sw), view, digests)

    # The dead worker wakes up and completes with its old lease: nothing changes.
    bogus = [(doc, b"\x00" * 256) for doc in claimed]
    hashes._complete(services, req["id"], dead_token, bogus, [])
    assert _check_signatures(_public_key(services, sw), _view(client, sw, req["id"]), digests) == signatures
    signed = [h for c in _signed_in_audit(services, req["id"]) for h in c]
    assert sorted(signed) == sorted(d.hex() for d in digests)  # each hash signed exactly once
    with services.db.session() as s:
        assert set(s.scalars(select(SignDocument.state).where(SignDocument.request_id == req["id"]))) \
            == {DocState.COMPLETED.value}


def test_two_hsm_workers_share_a_batch(client: Any, services: Services, sw: SigningWorld, softhsm: SoftHsm) -> None:
    with hsm_worker_processes(services, softhsm, 2):
        assert Dispatcher(services).finishing_jobs(files=0, hashes=1000) == 2
        assert Dispatcher(services).finishing_jobs(files=0, hashes=hashes.CHUNK) == 1
        assert Dispatcher(services).finishing_jobs(files=1, hashes=0) == 1

        digests = _digests(1000, "shared")
        req = _create(client, sw, digests)
        assert approve(client, sw.world, sw.leader, req).status_code == 202
        deadline = time.monotonic() + 120
        view = client.get(f"/v1/sign-requests/{req['id']}?wait=60",
                          headers={"Authorization": f"Bearer {sw.world.api_key}"}).json
        while view["state"] == "SIGNING" and time.monotonic() < deadline:
            view = _view(client, sw, req["id"])
        _check_signatures(_public_key(services, sw), view, digests)
    with services.db.session() as s:
        details = [json.loads(d) for d in s.scalars(select(AuditEvent.detail).where(
            AuditEvent.action == "hashes.sign", AuditEvent.target == f"sign_request:{req['id']}"))]
    assert len({d["worker"] for d in details}) == 2  # both processes signed part of the batch
    assert sorted(h for d in details for h in d["dtbsr"]) == sorted(d.hex() for d in digests)
