"""The `signer` command against real SoftHSM2, Redis and the test databases."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import hsm
from signer import credentials
from signer.cli import main
from signer.db import Database
from signer.models import AuditEvent, Credential, Organisation, User
from signer.services import Services


def run(env: dict[str, str], *args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(main, list(args), env=env, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def test_init_is_idempotent_and_writes_the_admin_password(cli_env: dict[str, str],
                                                         services: Services) -> None:
    migrate_first = run(cli_env, "db", "upgrade")
    assert "up to date" in migrate_first
    first = run(cli_env, "init")
    assert "created admin 'admin'" in first
    secret = Path(cli_env["SIGNER_STATE_DIR"]) / "secrets" / "admin-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert "already exists" in run(cli_env, "init")
    with services.db.session() as s:
        admin = s.scalar(select(User).where(User.username == "admin"))
        assert admin is not None and admin.password_hash is not None
        assert services.passwords.verify(admin.password_hash, secret.read_text())


def test_administration_commands(cli_env: dict[str, str], services: Services, token: hsm.Hsm) -> None:
    run(cli_env, "create-org", "--code", "000.00.00.H41", "--name", "UBND tỉnh Nghệ An")
    run(cli_env, "create-org", "--code", "000.00.01.H41", "--name", "Văn phòng", "--parent", "000.00.00.H41")
    run(cli_env, "create-user", "--username", "chu-tich", "--full-name", "Nguyễn Văn Chủ",
        "--org", "000.00.01.H41", "--role", "leader", "--password-file", "-",
        input="mật-khẩu-rất-dài\n")
    client = json.loads(run(cli_env, "create-api-client", "--name", "QLVB", "--org", "000.00.01.H41"))
    assert client["api_key"].startswith("sk_")
    made = json.loads(run(cli_env, "create-key", "--org", "000.00.01.H41", "--name", "Chữ ký Chủ tịch",
                          "--kind", "personal", "--owner", "chu-tich", "--spec", "ec-p256"))
    assert made["key_label"] in token.list_keys()
    attrs = token.key_attributes(made["key_label"])
    assert attrs["sensitive"] and not attrs["extractable"]
    with services.db.session() as s:
        cred = s.get(Credential, made["id"])
        assert cred is not None and cred.status == "pending" and cred.kind == "personal"
        actions = [e.action for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))]
    assert actions == ["organisation.create", "organisation.create", "user.create",
                       "api_client.create", "credential.register"]
    status = json.loads(run(cli_env, "hsm-status"))
    assert status["token_label"] == "test-main" and status["key_count"] >= 1
    assert "intact: 5 rows" in run(cli_env, "audit", "verify")


@pytest.mark.one_db  # validation and the token; commit failures stay on both
def test_failed_registration_leaves_no_key_on_the_token(cli_env: dict[str, str], token: hsm.Hsm) -> None:
    run(cli_env, "create-org", "--code", "000.00.00.H14", "--name", "UBND tỉnh Cao Bằng")
    before = set(token.list_keys())
    # A personal key without an owner is refused after the key was generated: it must be removed.
    result = CliRunner().invoke(main, ["create-key", "--org", "000.00.00.H14", "--name", "x",
                                       "--kind", "personal"], env=cli_env)
    assert result.exit_code == 1
    assert "owner" in result.output
    assert set(token.list_keys()) == before


@pytest.mark.one_db  # CLI output
def test_errors_are_one_line_without_traceback(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["create-org", "--code", "bad", "--name", "x"], env=cli_env)
    assert result.exit_code == 1
    assert result.output.startswith("error:") and "Traceback" not in result.output
    env = dict(cli_env, SIGNER_HSM_PIN="wrong-pin")
    bad_pin = CliRunner().invoke(main, ["hsm-status"], env=env)
    assert bad_pin.exit_code == 1 and "PinIncorrect" in bad_pin.output
    assert "wrong-pin" not in bad_pin.output
    bad_settings = CliRunner().invoke(main, ["hsm-status"], env=dict(cli_env, REDIS_URL="http://x"))
    assert bad_settings.exit_code == 2 and "redis_url" in bad_settings.output


def _count_keys_and_sessions(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[int]]:
    """Record every key ``create-key`` generates, and how many database sessions were open then."""
    generated: list[str] = []
    open_sessions: list[int] = []
    active = [0]
    real_session, real_generate = Database.session, hsm.Hsm.generate_key

    @contextmanager
    def counting_session(self: Database) -> Iterator[Session]:
        active[0] += 1
        try:
            with real_session(self) as s:
                yield s
        finally:
            active[0] -= 1

    def generate(self: hsm.Hsm, label: str, spec: hsm.KeySpec) -> hsm.KeyInfo:
        open_sessions.append(active[0])
        generated.append(label)
        return real_generate(self, label, spec)

    monkeypatch.setattr(Database, "session", counting_session)
    monkeypatch.setattr(hsm.Hsm, "generate_key", generate)
    return generated, open_sessions


def test_create_key_generates_outside_any_transaction(cli_env: dict[str, str], token: hsm.Hsm,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run(cli_env, "create-org", "--code", "000.00.00.H14", "--name", "UBND tỉnh Cao Bằng")
    generated, open_sessions = _count_keys_and_sessions(monkeypatch)
    made = json.loads(run(cli_env, "create-key", "--org", "000.00.00.H14", "--name", "Con dấu",
                          "--kind", "organisation"))
    assert generated == [made["key_label"]] and open_sessions == [0]
    token.delete_key(made["key_label"])


@pytest.mark.parametrize("failure", ["unexpected-error", "commit"])
def test_any_failure_after_generation_removes_the_key(cli_env: dict[str, str], token: hsm.Hsm,
                                                      services: Services, failure: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    run(cli_env, "create-org", "--code", "000.00.00.H14", "--name", "UBND tỉnh Cao Bằng")
    generated, _ = _count_keys_and_sessions(monkeypatch)
    real_register = credentials.register_key

    def register(session: Session, *args: Any, **kwargs: Any) -> Credential:
        if failure == "unexpected-error":
            raise RuntimeError("not a SignerError")
        cred = real_register(session, *args, **kwargs)
        # Fails only when the transaction is flushed at commit: the code is already taken.
        session.add(Organisation(code="000.00.00.H14", name="trùng mã"))
        return cred

    monkeypatch.setattr(credentials, "register_key", register)
    result = CliRunner().invoke(main, ["create-key", "--org", "000.00.00.H14", "--name", "x",
                                       "--kind", "organisation"], env=cli_env)
    assert result.exit_code == 1
    assert len(generated) == 1
    assert generated[0] not in token.list_keys()
    with services.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Credential)) == 0


@pytest.mark.one_db  # PKI artefacts checked with openssl
def test_builtin_ca_certify_and_device(cli_env: dict[str, str], services: Services, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from signer.signing.models import Device, PkiAuthority

    run(cli_env, "create-org", "--code", "000.00.00.H29", "--name", "UBND TP Hồ Chí Minh")
    run(cli_env, "create-user", "--username", "pho-chu-tich", "--full-name", "Trần Thị Mai",
        "--org", "000.00.00.H29", "--role", "leader", "--password-file", "-", input="mật-khẩu-rất-dài\n")
    first = json.loads(run(cli_env, "ca", "init"))
    assert json.loads(run(cli_env, "ca", "init")) == first  # idempotent
    made = json.loads(run(cli_env, "create-key", "--org", "000.00.00.H29", "--name", "Chữ ký",
                          "--kind", "personal", "--owner", "pho-chu-tich"))
    certified = json.loads(run(cli_env, "ca", "certify", made["id"]))
    assert certified["status"] == "active"
    key = ec.generate_private_key(ec.SECP256R1())
    pem = tmp_path / "app-key.pem"
    pem.write_bytes(key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    (tmp_path / "pin").write_text("246810\n")
    device = json.loads(run(cli_env, "create-device", "--username", "pho-chu-tich", "--public-key-file", str(pem),
                            "--pin-file", str(tmp_path / "pin")))
    with services.db.session() as s:
        assert {a.kind for a in s.scalars(select(PkiAuthority))} == {"root", "issuing", "tsa", "ocsp"}
        stored = s.get(Device, device["device_id"])
        assert stored is not None and stored.status == "active"
        cred = s.get(Credential, made["id"])
        assert cred is not None and cred.certificate_der is not None and cred.chain_pem
    leaf, chain = tmp_path / "leaf.der", tmp_path / "chain.pem"
    leaf.write_bytes(cred.certificate_der)
    chain.write_text(cred.chain_pem)
    pem_leaf = tmp_path / "leaf.pem"
    subprocess.run(["openssl", "x509", "-inform", "DER", "-in", str(leaf), "-out", str(pem_leaf)], check=True)
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(chain), str(pem_leaf)], capture_output=True,
                              text=True, check=False)
    assert verified.returncode == 0 and ": OK" in verified.stdout
