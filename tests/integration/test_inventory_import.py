"""Bulk import of existing certificates (keys on USB tokens or SIM cards) for inventory and expiry
tracking: per-row outcomes, bad rows never cost the good ones, 500 rows well under a minute."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from signer.errors import InvalidInput
from signer.models import AuditEvent, Role
from signer.pki.inventory import import_inventory
from signer.principal import Principal
from signer.services import Services
from signer.signing.models import IssuedCertificate
from tests.conftest import World
from tests.integration.test_api_auth import assert_problem, counts, login

OFFICE_CODE, OTHER_CODE = "000.00.01.H53", "000.00.02.H53"  # the world fixture's office and its sibling


def make_certificates(count: int) -> list[x509.Certificate]:
    """``count`` distinct end-entity certificates from a throwaway issuer (one leaf key: the
    registry tracks certificates, and signing is what costs time here)."""
    issuer_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "CA cấp USB token thử nghiệm")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    certs = []
    for n in range(count):
        subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                             x509.NameAttribute(NameOID.COMMON_NAME, f"Nguyễn Văn Số {n}")])
        certs.append(x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                     .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(start).not_valid_after(start + dt.timedelta(days=30 + n))
                     .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                     .sign(issuer_key, hashes.SHA256()))
    return certs


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode()


def csv_bytes(rows: list[dict[str, str]], delimiter: str = ",") -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["pem", "holder", "organisation_code", "note"], delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _person(world: World, username: str, organisation: str, role: Role) -> Principal:
    return Principal(kind="user", id=world.users[username], organisation_id=organisation, roles=frozenset({role}))


def _inventory_count(services: Services, organisation_id: str) -> int:
    with services.db.session() as s:
        return s.scalar(select(func.count()).select_from(IssuedCertificate).where(
            IssuedCertificate.source == "inventory", IssuedCertificate.organisation_id == organisation_id)) or 0


def _import_audits(services: Services) -> list[dict[str, Any]]:
    with services.db.session() as s:
        return [json.loads(e.detail) for e in s.scalars(select(AuditEvent).where(
            AuditEvent.action == "certificate.inventory_import").order_by(AuditEvent.seq))]


def test_csv_of_500_keeps_good_rows_and_reports_bad_ones(client: Any, services: Services, world: World) -> None:
    certs = make_certificates(485)
    good, recorded = certs[:475], certs[475:480]  # recorded: already in the registry before the big import
    foreign = certs[480:485]  # rows naming an organisation the RA officer does not manage
    with services.db.session() as s:
        first = import_inventory(s, _person(world, "office-ra", world.office, Role.RA_OFFICER), world.office,
                                 csv_data=csv_bytes([{"pem": pem(c)} for c in recorded]))
        assert first.count("imported") == 5

    rows: list[dict[str, str]] = []
    expected: list[str] = []
    for n, cert in enumerate(good):
        rows.append({"pem": pem(cert), "holder": f"Trần Thị Bích {n} (USB token)",
                     "organisation_code": OFFICE_CODE if n % 100 == 0 else "", "note": "Sở Tài chính cấp"})
        expected.append("imported")
        if n % 50 == 7:  # sprinkle the bad rows between good ones
            junk = ["", "không phải PEM", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
                    pem(cert)[:200], "@@@@", "TUlJQg==", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
                    pem(cert) + pem(good[0]), "x" * 100, "MIIB"][len(rows) % 10]
            rows.append({"pem": junk, "holder": "", "organisation_code": "", "note": ""})
            expected.append("error")
    for cert in good[100:105]:
        rows.append({"pem": pem(cert), "holder": "", "organisation_code": "", "note": ""})
        expected.append("duplicate")
    for cert in recorded:
        rows.append({"pem": pem(cert), "holder": "", "organisation_code": "", "note": ""})
        expected.append("duplicate")
    for cert in foreign:
        rows.append({"pem": pem(cert), "holder": "", "organisation_code": OTHER_CODE, "note": ""})
        expected.append("error")
    assert len(rows) == 500 and expected.count("error") == 15

    login(client, world, "office-ra")
    started = time.perf_counter()
    resp = client.post(f"/v1/admin/certificates/import?organisation_id={world.office}", data=csv_bytes(rows),
                       content_type="text/csv; charset=utf-8")
    elapsed = time.perf_counter() - started
    print(f"500-row CSV import: {elapsed:.2f} s")
    assert elapsed < 60, elapsed  # the acceptance bound
    assert resp.status_code == 200, resp.get_data(as_text=True)[:2000]
    report = resp.json
    assert (report["total"], report["imported"], report["duplicates"], report["errors"]) == (500, 475, 10, 15)
    assert [r["status"] for r in report["rows"]] == expected
    assert [r["row"] for r in report["rows"]] == list(range(1, 501))
    for r in report["rows"]:
        if r["status"] == "error":
            assert r["error"] and r["certificate_id"] is None
        if r["status"] == "imported":
            assert r["certificate_id"] and len(r["fingerprint"]) == 64 and r["error"] is None
    foreign_rows = report["rows"][-5:]
    assert all(OTHER_CODE in r["error"] for r in foreign_rows)
    in_file = report["rows"][-15:-10]
    assert all(r["certificate_id"] for r in in_file)  # points at the row imported earlier in the file

    assert _inventory_count(services, world.office) == 480  # the good rows are kept
    with services.db.session() as s:
        sample = s.scalar(select(IssuedCertificate).where(
            IssuedCertificate.fingerprint_sha256 == good[3].fingerprint(hashes.SHA256()).hex()))
        assert sample is not None
        assert (sample.source, sample.credential_id) == ("inventory", None)
        assert sample.holder == "Trần Thị Bích 3 (USB token)"
    audits = _import_audits(services)
    assert len(audits) == 2  # one per import, not one per certificate
    big = audits[-1]
    assert (big["imported"], big["duplicates"], big["errors"], big["total"]) == (475, 10, 15, 500)
    assert len(big["certificates"]) == 475 and big["certificates"][0]["note"] == "Sở Tài chính cấp"
    assert "BEGIN CERTIFICATE" not in json.dumps(big)


def test_pem_files_over_http_by_an_admin(client: Any, services: Services, world: World) -> None:
    certs = make_certificates(3)
    login(client, world, "office-admin")
    resp = client.post("/v1/admin/certificates/import", content_type="multipart/form-data", data={
        "organisation_id": world.office,
        "file": [(io.BytesIO((pem(certs[0]) + pem(certs[1])).encode()), "usb-tokens.pem"),
                 (io.BytesIO(certs[2].public_bytes(Encoding.DER)), "sim.cer"),
                 (io.BytesIO(b"garbage"), "broken.pem")]})
    assert resp.status_code == 200, resp.json
    rows = resp.json["rows"]
    assert [(r["file"], r["row"], r["status"]) for r in rows] == [
        ("usb-tokens.pem", 1, "imported"), ("usb-tokens.pem", 2, "imported"), ("sim.cer", 1, "imported"),
        ("broken.pem", 1, "error")]
    assert rows[2]["fingerprint"] == certs[2].fingerprint(hashes.SHA256()).hex()
    assert _inventory_count(services, world.office) == 3
    # Again: every certificate is now a duplicate, not an error, and nothing is added.
    again = client.post("/v1/admin/certificates/import", content_type="multipart/form-data", data={
        "file": [(io.BytesIO(pem(certs[0]).encode()), "again.pem")],
        "csv": (io.BytesIO(b"\xef\xbb\xbfpem;holder\n\"" + pem(certs[1]).encode() + b"\";SIM Viettel\n"), "x.csv")})
    assert again.status_code == 200, again.json
    assert [r["status"] for r in again.json["rows"]] == ["duplicate", "duplicate"]
    assert again.json["organisation_id"] == world.office  # defaults to the caller's organisation
    assert _inventory_count(services, world.office) == 3


def test_who_may_import_and_malformed_uploads(client: Any, services: Services, world: World) -> None:
    body = csv_bytes([{"pem": pem(c)} for c in make_certificates(2)])
    url = f"/v1/admin/certificates/import?organisation_id={world.office}"
    login(client, world, "office-auditor")
    before = counts(services)
    assert_problem(client.post(url, data=body, content_type="text/csv"), 403, "forbidden")
    after = counts(services)
    assert after == before | {"audit_events": before["audit_events"] + 1}  # only the denial is recorded
    client.delete("/v1/session")
    login(client, world, "other-admin")  # a sibling organisation's admin
    assert_problem(client.post(url, data=body, content_type="text/csv"), 404, "not-found")
    client.delete("/v1/session")
    login(client, world, "office-ra")
    assert_problem(client.post(url, data=b"holder\nx\n", content_type="text/csv"), 422, "invalid-input")
    assert_problem(client.post(url, data=b"\xff\xfe", content_type="text/csv"), 422, "invalid-input")
    assert_problem(client.post(url, data=body, content_type="application/json"), 415, "unsupported-media-type")
    assert _inventory_count(services, world.office) == 0
    with services.db.session() as s, pytest.raises(InvalidInput):
        import_inventory(s, _person(world, "office-ra", world.office, Role.RA_OFFICER), world.office)
