"""``signer cert ...``: the whole lifecycle from the command line, with the real executor, the
built-in CA and a stand-in Government CA (external back end), checked with openssl."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

import hsm
from signer.cli import main
from signer.models import Credential
from signer.services import Services
from tests.conftest import World
from tests.integration.test_external_ca import GovernmentCa
from tests.signing_support import SigningWorld, make_signing_world


@pytest.fixture
def sw(services: Services, world: World, token: hsm.Hsm) -> SigningWorld:
    return make_signing_world(services, world, token, "ec-p256")


def cli(env: dict[str, str], *args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(main, list(args), env=env)
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def test_issue_approve_run_and_revoke(cli_env: dict[str, str], services: Services, sw: SigningWorld,
                                      tmp_path: Path) -> None:
    env = cli_env
    assert json.loads(cli(env, "cert", "policy", "issue", "--as", "office-admin", "--approvals", "1",
                          "--role", "admin", "--ttl-hours", "8"))["roles"] == ["admin"]
    out = json.loads(cli(env, "cert", "request", "issue", "--as", "office-ra", "--org", "000.00.01.H53",
                         "--name", "Chữ ký Phó Chánh Văn phòng", "--owner", "office-leader",
                         "--profile", "personal-signing", "--subject-profile", "leader",
                         "--subject", "full_name=Lê Văn Đức", "--subject", "citizen_id=079201009999"))
    rid = out["id"]
    assert out["status"] == "pending"
    # The policy names admins only; the requester would be refused anyway (no self-approval).
    assert "roles: admin" in cli(env, "cert", "approve", rid, "--as", "office-ra", ok=False)
    assert "error:" in cli(env, "cert", "request", "issue", "--as", "office-ra", "--org", "000.00.01.H53",
                           "--name", "x", "--owner", "office-leader", "--profile", "personal-signing",
                           "--subject-profile", "leader", ok=False)  # no full_name: refused, nothing stored
    assert json.loads(cli(env, "cert", "approve", rid, "--as", "office-admin"))["status"] == "approved"
    assert json.loads(cli(env, "cert", "run", rid))["status"] == "completed"
    listed = [json.loads(line) for line in cli(env, "cert", "list", "--status", "completed").splitlines()]
    assert [r["id"] for r in listed] == [rid]
    credential_id = listed[0]["items"][0]["credential_id"]
    with services.db.session() as s:
        cred = s.get(Credential, credential_id)
        assert cred is not None and cred.status == "active"
        cert = x509.load_der_x509_certificate(cred.certificate_der or b"")
    assert "Lê Văn Đức" in cert.subject.rfc4514_string()

    rid = json.loads(cli(env, "cert", "request", "revoke", "--as", "office-ra", "--org", "000.00.01.H53",
                         "--credential", credential_id, "--reason", "affiliationChanged"))["id"]
    cli(env, "cert", "approve", rid, "--as", "office-admin")
    assert json.loads(cli(env, "cert", "run", rid))["status"] == "completed"
    with services.db.session() as s:
        assert s.get(Credential, credential_id).status == "revoked"  # type: ignore[union-attr]


def test_external_ca_round_trip_and_inventory(cli_env: dict[str, str], services: Services, sw: SigningWorld,
                                              token: hsm.Hsm, tmp_path: Path) -> None:
    env = cli_env
    rid = json.loads(cli(env, "cert", "request", "issue", "--as", "office-ra", "--org", "000.00.01.H53",
                         "--name", "Con dấu Văn phòng", "--profile", "organisation-seal",
                         "--subject-profile", "organisation", "--subject", "province=Tây Ninh",
                         "--ca", "external"))["id"]
    cli(env, "cert", "approve", rid, "--as", "office-admin")
    assert json.loads(cli(env, "cert", "run", rid))["status"] == "awaiting_certificate"

    csr_path, pdf = tmp_path / "req.pem", tmp_path / "summary.pdf"
    cli(env, "cert", "csr", rid, "--out", str(csr_path))
    verified = subprocess.run(["openssl", "req", "-verify", "-noout", "-in", str(csr_path)], capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0 and "verify OK" in verified.stdout + verified.stderr
    summary = json.loads(cli(env, "cert", "summary", rid, "--as", "office-ra", "--pdf", str(pdf)))
    assert summary["organisation"]["code"] == "000.00.01.H53" and pdf.read_bytes().startswith(b"%PDF")

    gov = GovernmentCa.create()
    csr = x509.load_pem_x509_csr(csr_path.read_bytes())
    other = GovernmentCa.create().issue(csr, public_key=gov.inter_key.public_key())  # not our key
    (tmp_path / "wrong.pem").write_bytes(gov.bundle(other))
    assert "error:" in cli(env, "cert", "import-issued", rid, str(tmp_path / "wrong.pem"), "--as", "office-ra",
                           ok=False)
    (tmp_path / "issued.pem").write_bytes(gov.bundle(gov.issue(csr)))
    imported = json.loads(cli(env, "cert", "import-issued", rid, str(tmp_path / "issued.pem"), "--as", "office-ra"))
    with services.db.session() as s:
        cred = s.get(Credential, imported["credential_id"])
        assert cred is not None and cred.status == "active" and cred.chain_pem
    assert json.loads(cli(env, "cert", "list", "--status", "completed").splitlines()[0])["id"] == rid

    # Inventory: certificates whose keys live on USB tokens, tracked for expiry.
    usb = [gov.issue(x509.CertificateSigningRequestBuilder().subject_name(csr.subject).sign(
        gov.inter_key, hashes.SHA256()))]
    (tmp_path / "usb.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in usb))
    (tmp_path / "rows.csv").write_text("pem,holder\nnot a certificate,Nguyễn A\n", encoding="utf-8")
    report = json.loads(cli(env, "cert", "import", str(tmp_path / "usb.pem"), "--as", "office-ra",
                            "--org", "000.00.01.H53"))
    assert report["imported"] == 1
    report = json.loads(cli(env, "cert", "import", str(tmp_path / "rows.csv"), "--as", "office-ra",
                            "--org", "000.00.01.H53"))
    assert report["errors"] == 1 and report["rows"][0]["status"] == "error"
