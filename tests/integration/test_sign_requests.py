"""The document-system API around signing: batches, formats, idempotency, long poll, outcomes,
bad input, approval security, webhooks."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import func, select, update

import hsm
from signer.services import Services
from signer.signing import challenge as chal
from signer.signing import sweeper, webhooks
from signer.signing.material import trust_roots
from signer.signing.models import Approval, SignDocument, SignRequest
from signer.workers import run_exchange_worker, run_hsm_worker
from tests.conftest import World
from tests.images import signature_png
from tests.pdfs import decision_pdf, encrypted_pdf, truncated_pdf
from tests.signing_support import PIN, SigningWorld, approve, make_signing_world, recompute_challenge
from tests.support import free_port


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm, client: Any) -> SigningWorld:
    result = make_signing_world(services, world, token, "ec-p256")
    client.post("/v1/session", json={"username": "office-admin", "password": world.password})
    assert client.put(f"/v1/credentials/{result.leader_credential}/images/signature", data=signature_png(),
                      content_type="image/png").status_code == 200
    client.delete("/v1/session")
    return result


def raw_doc(n: int) -> dict[str, Any]:
    return {"name": f"hash {n}", "format": "raw", "hash": hashlib.sha256(b"%d" % n).hexdigest()}


def headers(sw: SigningWorld) -> dict[str, str]:
    return {"Authorization": f"Bearer {sw.world.api_key}"}


def pdf_doc(name: str = "Quyết định", pdf: bytes | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "format": "pades", "profile": "approved", "level": "B-B",
            "placement": {"anchor": "Nguyễn Văn An"},
            "content": base64.b64encode(pdf or decision_pdf()).decode(), **extra}


def create(client: Any, sw: SigningWorld, docs: list[dict[str, Any]], **extra: Any) -> Any:
    body = {"credential_id": sw.leader_credential, "documents": docs, **extra}
    return client.post("/v1/sign-requests", json=body, headers=headers(sw))


def status(client: Any, sw: SigningWorld, request_id: str) -> dict[str, Any]:
    resp = client.get(f"/v1/sign-requests/{request_id}", headers=headers(sw))
    assert resp.status_code == 200
    return dict(resp.json)


def fingerprint(services: Services) -> dict[str, int]:
    with services.db.session() as s:
        return {name: s.scalar(select(func.count()).select_from(model)) or 0
                for name, model in (("requests", SignRequest), ("documents", SignDocument),
                                    ("approvals", Approval))}


def blob_count(services: Services) -> int:
    root = services.blobs.root
    return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith("image-"))


def roots(services: Services) -> Any:
    with services.db.session() as s:
        return trust_roots(s)


# -- batches and formats ----------------------------------------------------------------------


@pytest.mark.one_db  # PDF preparation and signing; large batches on both: test_sign_hash_batches.py
@pytest.mark.slow
def test_batch_of_100_pdfs_signed_after_one_approval(client: Any, services: Services, sw: SigningWorld) -> None:
    pdf = decision_pdf()
    docs = [pdf_doc(f"Văn bản {i}", pdf) for i in range(100)]
    req = create(client, sw, docs).json
    assert len(req["documents"]) == 100
    assert len({d["dtbsr"] for d in req["documents"]}) == 100  # each prepared separately
    assert approve(client, sw.world, sw.leader, req).status_code == 202
    run_hsm_worker(services, burst=True)
    done = status(client, sw, req["id"])
    assert done["state"] == "COMPLETED" and done["result"] == "OK"
    context = ValidationContext(trust_roots=roots(services), allow_fetching=False)
    for doc in done["documents"]:
        data = client.get(doc["signed_url"], headers=headers(sw)).data
        sig = PdfFileReader(io.BytesIO(data)).embedded_signatures[0]
        assert validate_pdf_signature(sig, context).bottom_line
    with services.db.session() as s:
        used = s.scalars(select(Approval).where(Approval.request_id == req["id"])).all()
    assert [a.status for a in used] == ["consumed"]


@pytest.mark.one_db  # the CMS output format
def test_detached_cms_verifies_with_openssl(client: Any, services: Services, sw: SigningWorld,
                                           tmp_path: Path) -> None:
    content = "<VanBan>Nội dung XML bất kỳ</VanBan>".encode()
    docs = [{"name": "XML", "format": "cades", "level": level,
             "content": base64.b64encode(content).decode()} for level in ("B-B", "B-T")]
    req = create(client, sw, docs).json
    approve(client, sw.world, sw.leader, req)
    run_hsm_worker(services, burst=True)
    done = status(client, sw, req["id"])
    assert done["state"] == "COMPLETED", done
    file = tmp_path / "doc.xml"
    file.write_bytes(content)
    with services.db.session() as s:
        root_pem = "".join(f"-----BEGIN CERTIFICATE-----\n{base64.encodebytes(r.dump()).decode()}"
                           "-----END CERTIFICATE-----\n" for r in trust_roots(s))
    (tmp_path / "roots.pem").write_text(root_pem)
    for i, doc in enumerate(done["documents"]):
        resp = client.get(doc["signed_url"], headers=headers(sw))
        assert resp.mimetype == "application/pkcs7-signature"
        sig = tmp_path / f"sig{i}.p7s"
        sig.write_bytes(resp.data)
        out = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig),
                              "-content", str(file), "-CAfile", str(tmp_path / "roots.pem"),
                              "-purpose", "any", "-out", "/dev/null"],
                             capture_output=True, text=True, check=False)
        assert "Verification successful" in out.stderr, out.stderr
        file.write_bytes(content + b" ")
        bad = subprocess.run(["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sig),
                              "-content", str(file), "-CAfile", str(tmp_path / "roots.pem"),
                              "-purpose", "any", "-out", "/dev/null"], capture_output=True, text=True,
                             check=False)
        assert bad.returncode != 0
        file.write_bytes(content)


@pytest.mark.one_db  # the raw signature format
def test_sign_hash_returns_a_raw_signature(client: Any, services: Services, sw: SigningWorld) -> None:
    digests = {alg: hashlib.new(alg, b"document kept by the DMS").digest() for alg in ("sha256", "sha384")}
    docs = [{"name": f"hash {alg}", "format": "raw", "hash": d.hex(), "hash_algorithm": alg}
            for alg, d in digests.items()]
    req = create(client, sw, docs).json
    assert [d["dtbsr"] for d in req["documents"]] == [d.hex() for d in digests.values()]
    approve(client, sw.world, sw.leader, req)
    run_hsm_worker(services, burst=True)
    done = status(client, sw, req["id"])
    with services.db.session() as s:
        from signer.models import Credential

        cred = s.get(Credential, sw.leader_credential)
        assert cred is not None
        public = load_der_public_key(cred.public_key_der)
    for doc, (alg, digest) in zip(done["documents"], digests.items(), strict=True):
        signature = client.get(doc["signed_url"], headers=headers(sw)).data
        assert base64.b64decode(doc["signature"]) == signature  # inline in the request view too
        h = hashes.SHA256() if alg == "sha256" else hashes.SHA384()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, digest, ec.ECDSA(utils.Prehashed(h)))
    _ = padding


@pytest.mark.one_db  # request parsing
def test_multipart_upload(client: Any, services: Services, sw: SigningWorld) -> None:
    meta = {"credential_id": sw.leader_credential, "documents": [
        {"name": "Tờ trình", "format": "pades", "profile": "approved", "file": "doc0",
         "placement": {"anchor": "Nguyễn Văn An"}}]}
    resp = client.post("/v1/sign-requests", headers=headers(sw), content_type="multipart/form-data",
                       data={"request": json.dumps(meta), "doc0": (io.BytesIO(decision_pdf()), "a.pdf")})
    assert resp.status_code == 202, resp.json
    missing = dict(meta, documents=[dict(meta["documents"][0], file="nope")])
    resp = client.post("/v1/sign-requests", headers=headers(sw), content_type="multipart/form-data",
                       data={"request": json.dumps(missing), "doc0": (io.BytesIO(decision_pdf()), "a.pdf")})
    assert resp.status_code == 422


# -- idempotency, long poll, outcomes ---------------------------------------------------------


def test_idempotency_key(client: Any, services: Services, sw: SigningWorld) -> None:
    body = {"credential_id": sw.leader_credential, "documents": [pdf_doc()]}
    first = client.post("/v1/sign-requests", json=body, headers=headers(sw) | {"Idempotency-Key": "k-1"})
    again = client.post("/v1/sign-requests", json=body, headers=headers(sw) | {"Idempotency-Key": "k-1"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json["id"] == again.json["id"]
    other = dict(body, documents=[pdf_doc("khác")])
    clash = client.post("/v1/sign-requests", json=other, headers=headers(sw) | {"Idempotency-Key": "k-1"})
    assert clash.status_code == 409 and clash.mimetype == "application/problem+json"
    assert fingerprint(services)["requests"] == 1


def test_long_poll_returns_when_the_state_changes(client: Any, services: Services, sw: SigningWorld,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from signer.api import signing as signing_api

    # Only the pub/sub announcement can end the wait early: the periodic re-check is pushed out.
    monkeypatch.setattr(signing_api, "RECHECK_S", 60.0)
    req = create(client, sw, [pdf_doc()]).json
    started = datetime.now(UTC)
    quick = client.get(f"/v1/sign-requests/{req['id']}?wait=1", headers=headers(sw))
    assert quick.json["state"] == "AWAITING_APPROVAL"
    assert (datetime.now(UTC) - started).total_seconds() >= 0.9

    def refuse_soon() -> None:
        import time

        time.sleep(0.5)
        with services.db.session() as s:
            from signer.signing import requests as workflow

            request = s.get(SignRequest, req["id"])
            assert request is not None
            workflow.fail(s, request, workflow.Reason.INTERNAL_ERROR, "test")

    t = threading.Thread(target=refuse_soon)
    t.start()
    started = datetime.now(UTC)
    waited = client.get(f"/v1/sign-requests/{req['id']}?wait=30", headers=headers(sw))
    t.join()
    assert waited.json["state"] == "FAILED"
    assert (datetime.now(UTC) - started).total_seconds() < 15  # woken by the announcement, not the deadline
    assert client.get(f"/v1/sign-requests/{req['id']}?wait=x", headers=headers(sw)).status_code == 422


def test_refuse_cancel_wrong_code_and_timeout(client: Any, services: Services, sw: SigningWorld) -> None:
    refused = create(client, sw, [pdf_doc()]).json
    client.post("/v1/session", json={"username": "office-leader", "password": sw.world.password})
    assert client.post(f"/v1/sign-requests/{refused['id']}/refusal", json={"reason": "Sai số"}).status_code == 200
    client.delete("/v1/session")
    assert status(client, sw, refused["id"])["result"] == "USER_REFUSED"

    cancelled = create(client, sw, [pdf_doc()]).json
    assert client.post(f"/v1/sign-requests/{cancelled['id']}/cancel", headers=headers(sw)).status_code == 200
    assert status(client, sw, cancelled["id"])["result"] == "CANCELLED"
    assert approve(client, sw.world, sw.leader, status(client, sw, cancelled["id"])).status_code == 409

    wrong = create(client, sw, [pdf_doc()]).json
    right = wrong["verification_code"]
    other = next(c for c in chal.code_choices(bytes.fromhex(wrong["challenge"])) if c != right)
    approve(client, sw.world, sw.leader, wrong, code=other)
    assert status(client, sw, wrong["id"])["result"] == "WRONG_VC"

    late = create(client, sw, [pdf_doc()], expires_in=30).json
    with services.db.session() as s:
        s.execute(update(SignRequest).where(SignRequest.id == late["id"])
                  .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert sweeper.expire_requests(services) == [late["id"]]
    final = status(client, sw, late["id"])
    assert (final["state"], final["result"]) == ("EXPIRED", "TIMEOUT")
    run_hsm_worker(services, burst=True)
    for rid in (refused["id"], cancelled["id"], wrong["id"], late["id"]):
        assert all(d["signed_url"] is None for d in status(client, sw, rid)["documents"])


# -- approval security ------------------------------------------------------------------------


def test_replayed_approval_signs_nothing(client: Any, services: Services, sw: SigningWorld) -> None:
    first = create(client, sw, [pdf_doc()]).json
    c = recompute_challenge(first)
    signature = sw.leader.key.sign(c, ec.ECDSA(hashes.SHA256()))
    body = {"device_id": sw.leader.device_id, "challenge": c.hex(),
            "signature": base64.b64encode(signature).decode(), "pin": PIN,
            "verification_code": chal.verification_code(c)}
    client.post("/v1/session", json={"username": "office-leader", "password": sw.world.password})
    assert client.post(f"/v1/sign-requests/{first['id']}/approval", json=body).status_code == 202
    second = create(client, sw, [pdf_doc("khác")]).json
    assert client.post(f"/v1/sign-requests/{second['id']}/approval", json=body).status_code == 202
    client.delete("/v1/session")
    run_hsm_worker(services, burst=True)
    assert status(client, sw, first["id"])["state"] == "COMPLETED"
    replay = status(client, sw, second["id"])
    assert (replay["state"], replay["reason"]) == ("FAILED", "APPROVAL_REPLAYED")
    assert replay["documents"][0]["signed_url"] is None


def test_approval_for_other_hashes_signs_nothing(client: Any, services: Services, sw: SigningWorld) -> None:
    req = create(client, sw, [pdf_doc()]).json
    forged = dict(req, documents=[dict(d, dtbsr=hashlib.sha256(b"other").hexdigest()) for d in req["documents"]])
    other_challenge = recompute_challenge(forged)
    approve(client, sw.world, sw.leader, req, challenge=other_challenge,
            code=req["verification_code"])
    run_hsm_worker(services, burst=True)
    final = status(client, sw, req["id"])
    assert (final["state"], final["reason"]) == ("FAILED", "APPROVAL_MISMATCH")


def test_expired_approval_signs_nothing(client: Any, services: Services, sw: SigningWorld) -> None:
    req = create(client, sw, [pdf_doc()]).json
    approve(client, sw.world, sw.leader, req)
    with services.db.session() as s:  # the approval reached us after the deadline
        s.execute(update(Approval).where(Approval.request_id == req["id"])
                  .values(created_at=datetime.fromisoformat(req["expires_at"]) + timedelta(seconds=5)))
    run_hsm_worker(services, burst=True)
    final = status(client, sw, req["id"])
    assert (final["result"], final["reason"]) == ("TIMEOUT", "APPROVAL_EXPIRED")
    assert final["documents"][0]["signed_url"] is None


def test_document_altered_after_approval_signs_nothing(client: Any, services: Services, sw: SigningWorld) -> None:
    req = create(client, sw, [pdf_doc(), pdf_doc("thứ hai")]).json
    approve(client, sw.world, sw.leader, req)
    with services.db.session() as s:
        doc = s.get(SignDocument, req["documents"][1]["id"])
        assert doc is not None and doc.prepared_blob is not None
        path = services.blobs._path(doc.prepared_blob)
    data = bytearray(path.read_bytes())
    data[200] ^= 0x01  # one bit inside the signed byte range
    path.write_bytes(bytes(data))
    run_hsm_worker(services, burst=True)
    final = status(client, sw, req["id"])
    assert final["state"] == "FAILED"
    assert [d["state"] for d in final["documents"]] == ["COMPLETED", "FAILED"]
    assert final["documents"][1]["reason"] == "DOCUMENT_ALTERED"


def test_forged_signature_and_foreign_device_sign_nothing(client: Any, services: Services,
                                                         sw: SigningWorld) -> None:
    forged = create(client, sw, [pdf_doc()]).json
    c = recompute_challenge(forged)
    client.post("/v1/session", json={"username": "office-leader", "password": sw.world.password})
    bad = base64.b64encode(ec.generate_private_key(ec.SECP256R1()).sign(c, ec.ECDSA(hashes.SHA256()))).decode()
    client.post(f"/v1/sign-requests/{forged['id']}/approval", json={
        "device_id": sw.leader.device_id, "challenge": c.hex(), "signature": bad, "pin": PIN,
        "verification_code": forged["verification_code"]})
    # The clerk's device is not the leader's: the web tier does not even accept it.
    other = create(client, sw, [pdf_doc()]).json
    resp = client.post(f"/v1/sign-requests/{other['id']}/approval", json={
        "device_id": sw.clerk.device_id, "challenge": c.hex(), "signature": bad, "pin": PIN,
        "verification_code": other["verification_code"]})
    assert resp.status_code == 404
    client.delete("/v1/session")
    run_hsm_worker(services, burst=True)
    assert status(client, sw, forged["id"])["reason"] == "APPROVAL_INVALID"
    # Someone who is not the holder cannot approve at all.
    assert approve(client, sw.world, sw.clerk, other).status_code == 403


# -- bad input --------------------------------------------------------------------------------


# Documents are validated and prepared before anything is written (signing/requests.py create), so
# the malformed-input cases run once; the credential look-ups (database queries) run on both.
@pytest.mark.parametrize(("case", "status_code", "slug"), [
    pytest.param("truncated", 422, "invalid-document", marks=pytest.mark.one_db),
    pytest.param("encrypted", 422, "invalid-document", marks=pytest.mark.one_db),
    pytest.param("not-pdf", 422, "invalid-document", marks=pytest.mark.one_db),
    pytest.param("bad-hash", 422, "invalid-input", marks=pytest.mark.one_db),
    pytest.param("bad-base64", 422, "invalid-input", marks=pytest.mark.one_db),
    ("unknown-credential", 404, "not-found"),
    ("other-org-credential", 404, "not-found"),
    pytest.param("too-many", 422, "invalid-input", marks=pytest.mark.one_db),
    pytest.param("too-many-hashes", 422, "invalid-input", marks=pytest.mark.one_db),
    pytest.param("files-in-a-hash-batch", 422, "invalid-input", marks=pytest.mark.one_db),
])
def test_bad_input_is_refused_and_nothing_stored(client: Any, services: Services, sw: SigningWorld,
                                                 case: str, status_code: int, slug: str) -> None:
    docs = {
        "truncated": [pdf_doc(pdf=truncated_pdf())], "encrypted": [pdf_doc(pdf=encrypted_pdf())],
        "not-pdf": [pdf_doc(pdf=b"PK\x03\x04 a zip, not a PDF")],
        "bad-hash": [{"name": "h", "format": "raw", "hash": "zz" * 32}],
        "bad-base64": [dict(pdf_doc(), content="not base64!")],
        "too-many": [pdf_doc()] * 101,
        "too-many-hashes": [raw_doc(n) for n in range(1001)],
        "files-in-a-hash-batch": [pdf_doc()] + [raw_doc(n) for n in range(100)],
    }.get(case, [pdf_doc()])
    body: dict[str, Any] = {"credential_id": sw.leader_credential, "documents": docs}
    if case == "unknown-credential":
        body["credential_id"] = "00000000-0000-0000-0000-000000000000"
    before, blobs = fingerprint(services), blob_count(services)
    key = sw.world.other_api_key if case == "other-org-credential" else sw.world.api_key
    resp = client.post("/v1/sign-requests", json=body, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == status_code, resp.json
    assert resp.mimetype == "application/problem+json"
    assert resp.json["type"] == f"urn:signer:problem:{slug}"
    assert fingerprint(services) == before and blob_count(services) == blobs


@pytest.mark.one_db  # refused while streaming, before any database work
def test_upload_over_the_limit_is_413_while_streaming(client: Any, services: Services, sw: SigningWorld) -> None:
    big = b"%PDF-1.7\n" + b"0" * (60 * 1024 * 1024)
    meta = {"credential_id": sw.leader_credential, "documents": [
        {"name": "lớn", "format": "pades", "profile": "approved", "file": "doc0",
         "placement": {"anchor": "x"}}]}
    before = fingerprint(services)
    # Encoded by hand: werkzeug's test client spools big multipart bodies to a file it never closes.
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="request"\r\n\r\n{json.dumps(meta)}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="doc0"; filename="big.pdf"\r\n'
            f"Content-Type: application/pdf\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()
    resp = client.post("/v1/sign-requests", headers=headers(sw), data=body,
                       content_type=f"multipart/form-data; boundary={boundary}")
    assert resp.status_code == 413 and resp.mimetype == "application/problem+json"
    as_json = client.post("/v1/sign-requests", headers=headers(sw),
                          json={"credential_id": sw.leader_credential,
                                "documents": [pdf_doc(pdf=big[: 51 * 1024 * 1024])]})
    assert as_json.status_code == 413
    assert fingerprint(services) == before


# -- webhooks ---------------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    answers: ClassVar[list[int]] = []  # status codes to answer, then 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).answers.pop(0) if type(self).answers else 204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    _Receiver.received = []
    _Receiver.answers = []
    server = http.server.HTTPServer(("127.0.0.1", free_port()), _Receiver)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.received
    server.shutdown()
    server.server_close()


def test_webhook_is_signed_and_sent_on_the_final_state(client: Any, services: Services, sw: SigningWorld,
                                                      receiver: Any) -> None:
    url, received = receiver
    client.post("/v1/session", json={"username": "office-admin", "password": sw.world.password})
    made = client.post("/v1/admin/api-clients", json={"name": "QLVB webhook", "organisation_id": sw.world.office,
                                                      "scopes": ["sign", "read"]}).json
    client.delete("/v1/session")
    assert made["webhook_secret"]
    body = {"credential_id": sw.leader_credential, "documents": [pdf_doc()], "callback_url": url}
    req = client.post("/v1/sign-requests", json=body,
                      headers={"Authorization": f"Bearer {made['api_key']}"}).json
    approve(client, sw.world, sw.leader, req)
    run_hsm_worker(services, burst=True)
    run_exchange_worker(services, burst=True)
    assert len(received) == 1
    head, payload = received[0]
    assert webhooks.verify(made["webhook_secret"], head["X-Signer-Timestamp"], head["X-Signer-Signature"],
                           payload)
    assert not webhooks.verify("wrong-secret", head["X-Signer-Timestamp"], head["X-Signer-Signature"], payload)
    event = json.loads(payload)
    assert (event["id"], event["state"], event["result"]) == (req["id"], "COMPLETED", "OK")


def test_failed_webhook_is_kept_and_retried(client: Any, services: Services, sw: SigningWorld,
                                           receiver: Any) -> None:
    from signer.jobs.signing import deliver_webhook
    from signer.signing.models import WebhookDelivery

    url, received = receiver
    _Receiver.answers = [500]
    req = create(client, sw, [pdf_doc()], callback_url=url).json
    client.post(f"/v1/sign-requests/{req['id']}/cancel", headers=headers(sw))
    run_exchange_worker(services, burst=True)
    with services.db.session() as s:
        delivery = s.scalar(select(WebhookDelivery).where(WebhookDelivery.request_id == req["id"]))
        assert delivery is not None
        assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "HTTP 500")
        delivery_id = delivery.id
    from rq.registry import ScheduledJobRegistry

    from signer.queues import EXCHANGE, queue

    assert f"webhook-{delivery_id}" in ScheduledJobRegistry(queue=queue(services, EXCHANGE)).get_job_ids()
    assert deliver_webhook(delivery_id) == "delivered"  # what the retry does once its backoff passed
    assert deliver_webhook(delivery_id) == "nothing to do"  # delivered once
    assert len(received) == 2 and json.loads(received[1][1])["state"] == "CANCELLED"


@pytest.mark.one_db  # a PDF check; rollbacks on refusal stay on both above
def test_certified_no_changes_pdf_is_refused(client: Any, services: Services, sw: SigningWorld) -> None:
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    from tests.pki import self_signed

    key = ec.generate_private_key(ec.SECP256R1())
    cert = self_signed(key, "Người chứng thực")
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER)),
        signing_key=asn1_keys.PrivateKeyInfo.load(key.private_bytes(Encoding.DER, PrivateFormat.PKCS8,
                                                                    NoEncryption())),
        cert_registry=SimpleCertificateStore())
    certified = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(decision_pdf())),
        signers.PdfSignatureMetadata(field_name="ChungThuc", certify=True,
                                     docmdp_permissions=fields.MDPPerm.NO_CHANGES),
        signer=signer).getvalue()
    before = fingerprint(services)
    resp = create(client, sw, [pdf_doc(pdf=certified)])
    assert resp.status_code == 422 and "no changes" in resp.json["detail"]
    assert fingerprint(services) == before


def test_callbacks_to_private_addresses_are_refused(client: Any, services: Services, sw: SigningWorld,
                                                    receiver: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from signer.jobs.signing import deliver_webhook
    from signer.signing.models import WebhookDelivery

    url, received = receiver
    monkeypatch.setattr(services, "settings", services.settings.model_copy(update={"webhook_allow_private": False}))
    # A literal private address: refused at once, nothing stored.
    before = fingerprint(services)
    resp = create(client, sw, [pdf_doc()], callback_url=url)
    assert resp.status_code == 422 and resp.json["type"] == "urn:signer:problem:invalid-input"
    assert "callback_url" in resp.json["detail"] and fingerprint(services) == before
    # A name that resolves to one: accepted (DNS is checked when delivering), then refused for good.
    named = url.replace("127.0.0.1", "localhost")
    req = create(client, sw, [pdf_doc()], callback_url=named).json
    client.post(f"/v1/sign-requests/{req['id']}/cancel", headers=headers(sw))
    run_exchange_worker(services, burst=True)
    with services.db.session() as s:
        delivery = s.scalar(select(WebhookDelivery).where(WebhookDelivery.request_id == req["id"]))
        assert delivery is not None
        assert delivery.status == "refused" and "private or reserved" in (delivery.last_error or "")
        delivery_id = delivery.id
    assert deliver_webhook(delivery_id) == "nothing to do"  # never retried
    assert received == []
