"""Certificate expiry notices (60, 30 and 7 days, once each, only the smallest threshold reached,
renewed certificates left alone) heard on the people's live channels and a signed gateway, and
credentials whose certificate ran out stop with their waiting requests FAILED."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from sqlalchemy import select

import hsm
from signer import notify
from signer.models import AuditEvent, Credential, CredentialStatus
from signer.pki import builtin_ca, expiry, revocation
from signer.pki.profiles import SIGNING
from signer.services import Services
from signer.signing.material import authority
from signer.signing.models import IssuedCertificate
from signer.workers import run_exchange_worker
from tests.conftest import World
from tests.signing_support import SigningWorld, approve, make_signing_world
from tests.support import free_port

DAY = dt.timedelta(days=1)


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def current(services: Services, credential_id: str) -> IssuedCertificate:
    """The credential's newest registry certificate."""
    with services.db.session() as s:
        cert = s.scalar(select(IssuedCertificate).where(IssuedCertificate.credential_id == credential_id)
                        .order_by(IssuedCertificate.created_at.desc()).limit(1))
        assert cert is not None
        return cert


def not_after(cert: IssuedCertificate) -> dt.datetime:
    return expiry.aware(cert.not_after)


def issue_from_ca(services: Services, token: hsm.Hsm, public_key_der: bytes, common_name: str, *,
                  validity_days: int, not_before: dt.datetime | None = None) -> x509.Certificate:
    """A certificate from the test world's built-in issuing CA for any public key."""
    with services.db.session() as s:
        issuing = authority(s, "issuing")
        assert issuing is not None
        label, issuing_der = issuing.key_label, issuing.certificate_der
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                         x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return builtin_ca.issue(token, label, x509.load_der_x509_certificate(issuing_der), public_key_der, subject,
                            SIGNING, builtin_ca.CaUrls(services.settings.public_url, "issuing"),
                            not_before=not_before, validity_days=validity_days)


def add_inventory(services: Services, token: hsm.Hsm, organisation_id: str, holder: str, *,
                  validity_days: int, not_before: dt.datetime | None = None) -> str:
    """Record a certificate whose key lives on a USB token elsewhere (a software key stands in)."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    cert = issue_from_ca(services, token, der, holder, validity_days=validity_days, not_before=not_before)
    with services.db.session() as s:
        return revocation.record_issued(s, cert, credential_id=None, authority=None, organisation_id=organisation_id,
                                        source="inventory", holder=holder).id


def renew(services: Services, token: hsm.Hsm, credential_id: str, validity_days: int = 1500) -> str:
    """A new certificate for the same credential and key, as a renewal makes."""
    with services.db.session() as s:
        cred = s.get(Credential, credential_id)
        assert cred is not None
        public_key_der = cred.public_key_der
    cert = issue_from_ca(services, token, public_key_der, "Office Leader", validity_days=validity_days)
    with services.db.session() as s:
        cred = s.get(Credential, credential_id)
        assert cred is not None
        cred.certificate_der = cert.public_bytes(Encoding.DER)
        return revocation.record_issued(s, cert, credential_id=credential_id, authority=authority(s, "issuing")).id


def notified(services: Services) -> dict[str, int]:
    """The certificates already told about, and their smallest threshold."""
    with services.db.session() as s:
        return {c.id: c.notified_days for c in s.scalars(select(IssuedCertificate))
                if c.notified_days is not None}


def audit_details(services: Services, action: str) -> list[dict[str, Any]]:
    with services.db.session() as s:
        return [json.loads(e.detail) | {"_target": e.target} for e in
                s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq))]


def heard(pubsub: Any, expected: int, settle_s: float = 0.3) -> list[dict[str, Any]]:
    """Every message on the subscribed channels: ``expected`` of them, then nothing more."""
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while len(found) < expected and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.2)
        if message is not None:
            found.append(json.loads(message["data"]))
    extra = pubsub.get_message(timeout=settle_s)
    assert extra is None, extra
    return found


@pytest.fixture
def channels(services: Services, world: World) -> Iterator[Any]:
    pubsub = services.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(*(notify.holder_channel(services, world.users[u]) for u in
                       ("office-leader", "office-admin", "office-ra", "office-clerk", "office-auditor",
                        "root-admin", "other-admin")))
    yield pubsub
    pubsub.close()


def test_one_notice_per_threshold_to_the_holder_and_the_officers(services: Services, sw: SigningWorld,
                                                                 channels: Any) -> None:
    leader, seal = current(services, sw.leader_credential), current(services, sw.seal_credential)
    end = min(not_after(leader), not_after(seal))
    assert expiry.run(services, end - 61 * DAY) == {"expired": 0, "notified": 0}

    schedule: list[int] = []
    for days_before, threshold in ((59, 60), (29, 30), (6, 7)):
        now = end - days_before * DAY
        assert expiry.run(services, now) == {"expired": 0, "notified": 2}
        assert expiry.run(services, now) == {"expired": 0, "notified": 0}  # idempotent
        assert notified(services) == {leader.id: threshold, seal.id: threshold}
        run_exchange_worker(services, burst=True)
        messages = heard(channels, 5)
        # The personal key's owner, and the organisation's admin and RA officer; never a clerk,
        # an auditor or another organisation's people.
        assert sorted((m["certificate_id"], m["username"]) for m in messages) == sorted(
            [(leader.id, "office-leader"), (leader.id, "office-admin"), (leader.id, "office-ra"),
             (seal.id, "office-admin"), (seal.id, "office-ra")])
        assert {(m["event"], m["days"]) for m in messages} == {("certificate.expiring", threshold)}
        sample = next(m for m in messages if m["certificate_id"] == leader.id)
        assert sample["holder"] == "Office Leader" and sample["serial"] == leader.serial
        vi, en = sample["message_vi"], sample["message_en"]
        assert vi.startswith(f"Chứng thư số của Office Leader (số hiệu {leader.serial}) sẽ hết hạn sau")
        assert en.startswith(f"The certificate of Office Leader (serial {leader.serial}) expires in")
        schedule.append(threshold)
    assert expiry.run(services, end - DAY) == {"expired": 0, "notified": 0}  # 7 was the last one
    assert schedule == [60, 30, 7]

    rows = audit_details(services, "certificate.expiry_notice")
    assert sorted((r["_target"], r["days"]) for r in rows) == sorted(
        (f"certificate:{c.id}", d) for c in (leader, seal) for d in (60, 30, 7))
    assert all(r["serial"] == leader.serial and r["fingerprint"] == leader.fingerprint_sha256
               for r in rows if r["_target"] == f"certificate:{leader.id}")


def test_first_seen_at_20_days_gets_only_the_30_day_notice(services: Services, sw: SigningWorld,
                                                           channels: Any) -> None:
    leader = current(services, sw.leader_credential)
    end = not_after(leader)
    notices = expiry.run(services, end - 20 * DAY)
    assert notices == {"expired": 0, "notified": 2}
    assert notified(services)[leader.id] == 30
    run_exchange_worker(services, burst=True)
    assert {m["days"] for m in heard(channels, 5)} == {30}
    with services.db.session() as s:
        again = expiry.notify_expiring(s, end - 8 * DAY)
    assert again == []  # still within 30, not yet within 7
    with services.db.session() as s:
        last = expiry.notify_expiring(s, end - 3 * DAY)
    assert {(n.certificate_id, n.days, n.days_left) for n in last} >= {(leader.id, 7, 3)}
    assert [r["days"] for r in audit_details(services, "certificate.expiry_notice")
            if r["_target"] == f"certificate:{leader.id}"] == [30, 7]


def test_renewed_certificates_are_not_nagged_and_inventory_holders_are_named(
        services: Services, sw: SigningWorld, token: hsm.Hsm, channels: Any) -> None:
    old = current(services, sw.leader_credential)
    renewed = renew(services, token, sw.leader_credential)
    usb = add_inventory(services, token, sw.world.office, "Trần Thị Bình", validity_days=20)
    seal = current(services, sw.seal_credential)
    # 20 days before the old certificates end: the seal and the USB token's certificate are told
    # (30 days), the leader's old one is not: the credential holds a renewed certificate.
    assert expiry.run(services, not_after(old) - 20 * DAY) == {"expired": 0, "notified": 1}
    assert expiry.run(services) == {"expired": 0, "notified": 1}  # now: the USB one, 20 days left
    state = notified(services)
    assert state == {seal.id: 30, usb: 30} and old.id not in state and renewed not in state
    run_exchange_worker(services, burst=True)
    messages = heard(channels, 4)
    assert sorted((m["certificate_id"], m["username"]) for m in messages) == sorted(
        [(seal.id, "office-admin"), (seal.id, "office-ra"), (usb, "office-admin"), (usb, "office-ra")])
    inventory = next(m for m in messages if m["certificate_id"] == usb)
    assert inventory["holder"] == "Trần Thị Bình"
    assert "do Trần Thị Bình giữ" in inventory["message_vi"] and "held by Trần Thị Bình" in inventory["message_en"]
    assert inventory["days_left"] in (19, 20)

    # Expiry of the old certificate does not stop the renewed credential; the seal's does.
    assert expiry.run(services, not_after(seal) + DAY)["expired"] == 1
    with services.db.session() as s:
        statuses = {c.id: c.status for c in s.scalars(select(Credential))}
    assert statuses[sw.leader_credential] == CredentialStatus.ACTIVE.value
    assert statuses[sw.seal_credential] == CredentialStatus.EXPIRED.value


def test_expiry_stops_the_credential_and_fails_its_waiting_requests(client: Any, services: Services,
                                                                    sw: SigningWorld) -> None:
    world, headers = sw.world, {"Authorization": f"Bearer {sw.world.api_key}"}

    def create(credential_id: str) -> Any:
        return client.post("/v1/sign-requests", headers=headers, json={"credential_id": credential_id, "documents": [
            {"name": "Công văn", "format": "raw", "hash": "5a" * 32}]})

    waiting = create(sw.leader_credential).json
    signing = create(sw.leader_credential).json
    assert approve(client, world, sw.leader, signing).status_code == 202  # SIGNING; no worker runs here
    with services.db.session() as s:
        seal = s.get(Credential, sw.seal_credential)
        assert seal is not None
        seal.status = CredentialStatus.SUSPENDED.value  # a suspended credential expires too
    end = max(not_after(current(services, c)) for c in (sw.leader_credential, sw.seal_credential))
    with services.db.session() as s:
        assert expiry.expire_credentials(s, end - DAY) == []
    assert expiry.run(services, end + DAY) == {"expired": 2, "notified": 0}
    assert expiry.run(services, end + DAY) == {"expired": 0, "notified": 0}

    for req in (waiting, signing):
        final = client.get(f"/v1/sign-requests/{req['id']}", headers=headers).json
        assert (final["state"], final["result"], final["reason"]) == ("FAILED", "FAILED", "CREDENTIAL_UNUSABLE")
    refused = create(sw.leader_credential)
    assert refused.status_code == 409 and refused.json["type"] == "urn:signer:problem:credential-unusable"
    assert "đã hết hạn" in refused.json["detail"] and "expired" in refused.json["detail"]

    rows = {r["_target"]: r for r in audit_details(services, "credential.expire")}
    leader = current(services, sw.leader_credential)
    assert rows[f"credential:{sw.leader_credential}"]["serial"] == leader.serial
    assert rows[f"credential:{sw.leader_credential}"]["fingerprint"] == leader.fingerprint_sha256
    assert sorted(rows[f"credential:{sw.leader_credential}"]["requests_failed"]) == sorted(
        [waiting["id"], signing["id"]])
    assert rows[f"credential:{sw.seal_credential}"]["previous_status"] == "suspended"


class _Gateway(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[bytes]] = []
    status: ClassVar[int] = 200

    def do_POST(self) -> None:
        type(self).received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    _Gateway.received, _Gateway.status = [], 200
    server = http.server.HTTPServer(("127.0.0.1", free_port()), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/sms"
    server.shutdown()
    server.server_close()


def test_gateway_gets_the_notice_and_a_failing_one_changes_nothing(
        services: Services, sw: SigningWorld, gateway: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "settings", services.settings.model_copy(update={"notify_webhook_url": gateway}))
    leader = current(services, sw.leader_credential)
    with services.db.session() as s:
        [notice] = [n for n in expiry.notify_expiring(s, not_after(leader) - 10 * DAY)
                    if n.certificate_id == leader.id]
    assert expiry.deliver(services, leader.id, notice.days) == 0
    bodies = [json.loads(b) for b in _Gateway.received]
    assert sorted(b["username"] for b in bodies) == ["office-admin", "office-leader", "office-ra"]
    assert {b["event"] for b in bodies} == {"certificate.expiring"}

    _Gateway.status = 503
    assert expiry.deliver(services, leader.id, notice.days) == 3  # counted, not raised
    assert notified(services)[leader.id] == 30
