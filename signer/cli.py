"""The ``signer`` command: set-up, administration, workers and ``signer run``."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

import hsm
from signer import audit, credentials, directory, migrate
from signer.cli_context import Context, pass_ctx
from signer.errors import SignerError
from signer.models import CredentialKind, Role, User, UserRole
from signer.principal import SYSTEM
from signer.settings import Settings, SettingsError

REPO = Path(__file__).resolve().parent.parent




def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Turns domain and configuration errors into one-line messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SettingsError as exc:
            _fail(str(exc), 2)
        except SignerError as exc:
            _fail(exc.detail)
        except hsm.HsmError as exc:
            _fail(f"HSM: {type(exc).__name__}: {exc}")


@click.group(cls=_Group)
@click.option("-v", "--verbose", is_flag=True, help="Log at INFO level.")
def main(verbose: bool) -> None:
    """Remote signing service for Vietnamese government documents."""
    ctx = click.get_current_context()
    ctx.call_on_close(ctx.ensure_object(Context).close)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# -- set-up --------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@pass_ctx
def db_upgrade(ctx: Context) -> None:
    """Apply every pending migration (idempotent)."""
    migrate.upgrade(ctx.services.db.engine)
    click.echo("database is up to date")


def _ensure_softhsm_token(settings: Settings) -> None:
    """Create the SoftHSM2 token when missing (``signer init`` is documented as doing the token).
    scripts/run.sh has already run the same script; it is idempotent, so this is a no-op there."""
    script = REPO / "softhsm" / "init-token.sh"
    if "softhsm" not in settings.hsm_module or not os.environ.get("SOFTHSM2_CONF") or not script.exists():
        return
    env = dict(os.environ, SIGNER_HSM_TOKEN=settings.hsm_token,
               SIGNER_HSM_PIN=settings.require_hsm_pin())
    subprocess.run([str(script)], env=env, check=True)


@main.command()
@click.option("--org-code", default="000.00.00.H53", show_default=True)
@click.option("--org-name", default="Ủy ban nhân dân tỉnh (mẫu)", show_default=True)
@click.option("--admin", "admin_username", default="admin", show_default=True)
@pass_ctx
def init(ctx: Context, org_code: str, org_name: str, admin_username: str) -> None:
    """Token, database and first admin; safe to run again."""
    settings = ctx.settings
    _ensure_softhsm_token(settings)
    status = ctx.services.hsm().status()
    click.echo(f"hsm token {status.token_label!r} ready ({status.key_count} keys)")
    migrate.upgrade(ctx.services.db.engine)
    with ctx.services.db.session() as s:
        has_admin = s.scalar(select(UserRole).where(UserRole.role == Role.ADMIN.value).limit(1))
        if has_admin:
            click.echo("an admin already exists; nothing else to do")
            return
        try:
            org = directory.find_organisation_by_code(s, org_code)
        except SignerError:
            org = directory.create_organisation(s, SYSTEM, code=org_code, name=org_name)
        password = os.environ.get("SIGNER_ADMIN_PASSWORD") or secrets.token_urlsafe(18)
        directory.create_user(s, ctx.services.passwords, SYSTEM, username=admin_username,
                              full_name="Quản trị hệ thống", organisation_id=org.id,
                              roles={Role.ADMIN}, password=password)
    if "SIGNER_ADMIN_PASSWORD" not in os.environ:
        path = settings.state_dir / "secrets" / "admin-password"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(password)
        path.chmod(0o600)
        click.echo(f"created admin {admin_username!r}; password in {path}")
    else:
        click.echo(f"created admin {admin_username!r}")


@main.group(invoke_without_command=True)
@click.option("--org-code", default="000.00.00.H53", show_default=True, help="The organisation `init` created.")
@click.option("--partner-code", default="000.00.02.H53", show_default=True,
              help="The second organisation, the one the exchange walk-through sends to.")
@click.pass_context
def demo(click_ctx: click.Context, org_code: str, partner_code: str) -> None:
    """Demo people, credentials, phones, an API key and two organisations on the local axis (idempotent;
    never for production). `signer demo exchange` then walks the exchange story against `signer run`."""
    if click_ctx.invoked_subcommand is not None:
        return
    from signer import demo as demo_data

    ctx = click_ctx.ensure_object(Context)
    made = demo_data.create(ctx.services, org_code, ctx.settings.public_url, partner_code)
    click.echo(json.dumps({
        "api_key_file": str(made.api_key_file), "leader_credential": made.leader_credential,
        "seal_credential": made.seal_credential, "pin_file": str(made.pin_file),
        "phones": {u: str(p) for u, p in made.phones.items()},
        "password_files": {u: str(p) for u, p in made.password_files.items()},
        "partner_code": made.partner_code,
        "axis_config": str(made.axis_config) if made.axis_config else None}, ensure_ascii=False, indent=2))


@demo.command("exchange")
@click.option("--partner-code", default="000.00.02.H53", show_default=True, help="The organisation to send to.")
@click.option("--base-url", help="The running service [default: SIGNER_PUBLIC_URL].")
@click.option("--timeout", "timeout_s", default=90.0, show_default=True, type=click.FloatRange(1, 3600),
              help="Seconds to wait for each step (signing, delivery, each status).")
@pass_ctx
def demo_exchange(ctx: Context, partner_code: str, base_url: str | None, timeout_s: float) -> None:
    """With `signer run` up: sign (leader, then seal), send to the partner over the axis, receive,
    verify and answer there, and show the sender's per-recipient statuses."""
    from signer import demo_exchange as walk
    from signer.interchange import directory as axis_directory

    walk.run(base_url or ctx.settings.public_url, ctx.settings.state_dir, partner_code=partner_code,
             timeout_s=timeout_s, sync_directory=lambda: axis_directory.sync(ctx.services))


# -- administration ------------------------------------------------------------------------------


@main.command("create-org")
@click.option("--code", required=True, help="QCVN 102 code, e.g. 000.00.01.H53")
@click.option("--name", required=True)
@click.option("--parent", "parent_code", help="Parent organisation code.")
@pass_ctx
def create_org(ctx: Context, code: str, name: str, parent_code: str | None) -> None:
    """Create an organisation."""
    with ctx.services.db.session() as s:
        parent_id = directory.find_organisation_by_code(s, parent_code).id if parent_code else None
        org = directory.create_organisation(s, SYSTEM, code=code, name=name, parent_id=parent_id)
        click.echo(json.dumps({"id": org.id, "code": org.code}))


@main.command("create-user")
@click.option("--username", required=True)
@click.option("--full-name", required=True)
@click.option("--org", "org_code", required=True, help="Organisation code.")
@click.option("--role", "roles", multiple=True, required=True,
              type=click.Choice([r.value for r in Role]))
@click.option("--email")
@click.option("--password-file", type=click.File("r"),
              help="Read the password from this file ('-' for stdin); default: prompt.")
@pass_ctx
def create_user(ctx: Context, username: str, full_name: str, org_code: str, roles: tuple[str, ...],
                email: str | None, password_file: Any) -> None:
    """Create a person with one or more roles."""
    if password_file is not None:
        password = password_file.read().strip()
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    with ctx.services.db.session() as s:
        org = directory.find_organisation_by_code(s, org_code)
        user = directory.create_user(s, ctx.services.passwords, SYSTEM, username=username,
                                     full_name=full_name, organisation_id=org.id,
                                     roles={Role(r) for r in roles}, password=password, email=email)
        click.echo(json.dumps({"id": user.id, "username": user.username}))


@main.command("create-api-client")
@click.option("--name", required=True)
@click.option("--org", "org_code", required=True)
@click.option("--scope", "scopes", multiple=True, default=("sign", "verify", "read"), show_default=True)
@pass_ctx
def create_api_client(ctx: Context, name: str, org_code: str, scopes: tuple[str, ...]) -> None:
    """Register a document system; prints its API key once."""
    with ctx.services.db.session() as s:
        org = directory.find_organisation_by_code(s, org_code)
        new = directory.create_api_client(s, SYSTEM, name=name, organisation_id=org.id,
                                          scopes=set(scopes))
        click.echo(json.dumps({"id": new.client.id, "api_key": new.key.token}))


@main.command("create-key")
@click.option("--org", "org_code", required=True)
@click.option("--name", required=True, help="What people see, e.g. 'Chữ ký Chủ tịch'.")
@click.option("--kind", type=click.Choice([k.value for k in CredentialKind]), required=True)
@click.option("--owner", "owner_username", help="Username of the leader (personal keys).")
@click.option("--spec", default="ec-p256", type=click.Choice(sorted(hsm.KEY_SPECS)), show_default=True)
@pass_ctx
def create_key(ctx: Context, org_code: str, name: str, kind: str, owner_username: str | None,
               spec: str) -> None:
    """Generate a key in the HSM and register it as a credential awaiting a certificate."""
    with ctx.services.db.session() as s:  # check the input before touching the token
        org_id = directory.find_organisation_by_code(s, org_code).id
        owner_id = None
        if owner_username:
            owner_id = s.scalar(select(User.id).where(User.username == owner_username))
            if owner_id is None:
                raise SignerError(f"no user {owner_username}")
    label = f"cred-{secrets.token_hex(8)}"
    # Generated outside any transaction (a slow RSA key must not hold the database write lock),
    # then registered; if anything fails, commit included, nothing half-made stays on the token.
    key = ctx.services.hsm().generate_key(label, hsm.KeySpec.parse(spec))
    try:
        with ctx.services.db.session() as s:
            cred = credentials.register_key(s, SYSTEM, name=name, kind=CredentialKind(kind),
                                            organisation_id=org_id, owner_user_id=owner_id,
                                            key=key, key_spec=spec)
    except BaseException:
        try:
            ctx.services.hsm().delete_key(label)
        except Exception:
            logging.getLogger(__name__).exception("could not delete key %s after a failed registration",
                                                  label)
        raise
    click.echo(json.dumps({"id": cred.id, "key_label": label, "key_spec": spec}))


@main.group("ca")
def ca_group() -> None:
    """The built-in PKI (root, issuing CA, TSA keys in the HSM)."""


@ca_group.command("init")
@click.option("--organisation", default="Hệ thống ký số (thử nghiệm)", show_default=True,
              help="Name in the CA certificates' subject.")
@click.option("--spec", default="ec-p256", type=click.Choice(sorted(hsm.KEY_SPECS)), show_default=True)
@pass_ctx
def ca_init(ctx: Context, organisation: str, spec: str) -> None:
    """Create the root, issuing CA and TSA once (idempotent) and publish their CRLs."""
    from signer.pki.service import init_builtin

    with ctx.services.db.session() as s:
        issuing = init_builtin(s, ctx.services.hsm(), SYSTEM, base_url=ctx.settings.public_url,
                               organisation=organisation, spec=spec)
        click.echo(json.dumps({"issuing_ca": issuing.slug, "key_label": issuing.key_label}))


@ca_group.command("certify")
@click.argument("credential_id")
@pass_ctx
def ca_certify(ctx: Context, credential_id: str) -> None:
    """Issue a signing certificate for a credential's HSM key from the built-in CA."""
    from signer.models import Credential
    from signer.pki.service import certify_credential

    with ctx.services.db.session() as s:
        cred = s.get(Credential, credential_id)
        if cred is None:
            raise SignerError("no such credential")
        cert = certify_credential(s, ctx.services.hsm(), SYSTEM, cred, base_url=ctx.settings.public_url)
        click.echo(json.dumps({"credential_id": cred.id, "serial": format(cert.serial_number, "x"),
                               "status": cred.status}))


@ca_group.command("revoke")
@click.argument("credential_id")
@click.option("--reason", default="unspecified", show_default=True,
              help="RFC 5280 reason: keyCompromise, affiliationChanged, superseded, cessationOfOperation, ...")
@pass_ctx
def ca_revoke(ctx: Context, credential_id: str, reason: str) -> None:
    """Revoke a credential's certificate now: it stops signing and the CRL is re-issued."""
    from signer.pki.revocation import revoke_credential

    with ctx.services.db.session() as s:
        cert = revoke_credential(s, ctx.services.hsm(), SYSTEM, credential_id, reason=reason)
        click.echo(json.dumps({"credential_id": credential_id, "serial": cert.serial, "reason": reason,
                               "revoked_at": cert.revoked_at.isoformat() if cert.revoked_at else None}))


@main.command("create-device")
@click.option("--username", required=True)
@click.option("--name", default="Điện thoại", show_default=True)
@click.option("--public-key-file", type=click.File("rb"), required=True,
              help="The app key: ECDSA P-256 public key, PEM or DER SubjectPublicKeyInfo.")
@click.option("--pin-file", type=click.File("r"), default=None,
              help="A file holding the device PIN (6-12 digits); asked for when not given.")
@pass_ctx
def create_device(ctx: Context, username: str, name: str, public_key_file: Any, pin_file: Any) -> None:
    """Register a holder's app key (approval device) with its PIN, active at once."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    from signer.devices.enrolment import register_app_key_for

    raw = public_key_file.read()
    der = (load_pem_public_key(raw).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
           if raw.lstrip().startswith(b"-----") else raw)
    pin = pin_file.read().strip() if pin_file else click.prompt("PIN", hide_input=True, confirmation_prompt=True)
    with ctx.services.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise SignerError(f"no user {username}")
        device = register_app_key_for(s, SYSTEM, ctx.services.pin_hasher, user_id=user.id, name=name,
                                      public_key_der=der, pin=pin)
        click.echo(json.dumps({"device_id": device.id, "username": username}))


@main.command("hsm-status")
@pass_ctx
def hsm_status(ctx: Context) -> None:
    """Log in to the token and describe it."""
    click.echo(json.dumps(asdict(ctx.services.hsm().status()), indent=2))


@main.group("audit")
def audit_group() -> None:
    """The audit log."""


@audit_group.command("verify")
@pass_ctx
def audit_verify(ctx: Context) -> None:
    """Check the hash chain; exit 1 naming the first broken row."""
    with ctx.services.db.session() as s:
        report = audit.verify(s)
    click.echo(report.describe())
    if not report.ok:
        sys.exit(1)


# -- processes -----------------------------------------------------------------------------------


@main.command()
@click.argument("kind", type=click.Choice(["hsm", "exchange"]))
@click.option("--burst", is_flag=True, help="Exit when the queue is empty.")
@pass_ctx
def worker(ctx: Context, kind: str, burst: bool) -> None:
    """Run the hsm worker (needs the PIN) or the exchange worker."""
    from signer import workers

    logging.getLogger().setLevel(logging.INFO)
    run = workers.run_hsm_worker if kind == "hsm" else workers.run_exchange_worker
    run(ctx.services, burst=burst)


@main.command()
@pass_ctx
def scheduler(ctx: Context) -> None:
    """Run the periodic-task scheduler."""
    from signer.scheduler import Scheduler

    logging.getLogger().setLevel(logging.INFO)
    Scheduler(ctx.services).run_forever()


@main.command()
@click.option("--web-workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--hsm-workers", default=2, show_default=True, type=click.IntRange(1, 64),
              help="Processes that hold the PIN and sign; large batches are shared between them.")
@click.option("--redis-port", default=6391, show_default=True,
              help="Port of the private Redis started when REDIS_URL is not set.")
def run(web_workers: int, hsm_workers: int, redis_port: int) -> None:
    """Start web, hsm workers, exchange worker, scheduler (and a private Redis and the local axis unless
    REDIS_URL / SIGNER_AXIS_URL say otherwise); Ctrl-C stops all."""
    from signer.supervisor import Supervisor, private_redis, service_children

    logging.getLogger().setLevel(logging.INFO)
    env = dict(os.environ)
    settings = Settings.from_env(env)
    settings.require_secret_key()
    settings.require_hsm_pin()
    redis_child = None
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        redis_child = private_redis(settings.state_dir, redis_port, env)
    # Each child gets its own copy of the environment; only the hsm workers' keep the PIN.
    children = service_children(settings.bind, web_workers, env, hsm_workers, local_axis=settings.axis_url is None)
    click.echo(f"signer: http://{settings.bind}/ (Ctrl-C stops everything)")
    sys.exit(Supervisor(settings.state_dir, children, redis_child, env["REDIS_URL"]).run())


from signer.phone import phone as _phone  # noqa: E402 - registered after the group exists

main.add_command(_phone)
from signer.lifecycle.commands import cert_group as _cert  # noqa: E402

main.add_command(_cert)
from signer.interchange.commands import axis_group as _axis  # noqa: E402

main.add_command(_axis)


if __name__ == "__main__":  # python -m signer.cli
    main()
