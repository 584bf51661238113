"""``signer cert ...``: the certificate lifecycle from the command line, acting as a named person
(``--as USERNAME``) so approvals keep their rules (no self-approval, roles) and the audit log names
who did what."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from signer.cli_context import Context, pass_ctx
from signer.errors import InvalidInput, NotFound
from signer.lifecycle import requests as lifecycle
from signer.lifecycle.models import Action, CertificateRequest, RequestStatus
from signer.models import Organisation, User
from signer.principal import Principal


def person(ctx: Context, username: str) -> Principal:
    """The principal of an active user, as the HTTP layer would build it."""
    with ctx.services.db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None or not user.active:
            raise NotFound(f"no active user {username}")
        return Principal(kind="user", id=user.id, organisation_id=user.organisation_id,
                         roles=frozenset(user.roles), name=user.full_name)


def summary(request: CertificateRequest) -> dict[str, Any]:
    return {"id": request.id, "action": request.action, "status": request.status,
            "approvals": sum(d.decision == "approve" for d in request.decisions),
            "approvals_required": request.approvals_required, "expires_at": request.expires_at.isoformat(),
            "items": [{"position": i.position, "credential_id": i.credential_id, "status": i.status,
                       "error": i.error} for i in request.items]}


@click.group("cert")
def cert_group() -> None:
    """Certificate requests: issue, renew, rekey, revoke, suspend, resume; approvals."""


@cert_group.command("request")
@click.argument("action", type=click.Choice([a.value for a in Action]))
@click.option("--as", "username", required=True, help="Who requests (an admin or RA officer).")
@click.option("--org", "org_code", required=True, help="Organisation code (QCVN 102).")
@click.option("--credential", "credential_ids", multiple=True, help="Credential id (repeat for bulk).")
@click.option("--name", help="issue: the credential's name, e.g. 'Chữ ký Chủ tịch'.")
@click.option("--owner", "owner_username", help="issue, personal profile: the leader's username.")
@click.option("--profile", help="issue: certificate profile (personal-signing, organisation-seal, ...).")
@click.option("--subject-profile", help="issue: subject profile (leader, organisation, ...).")
@click.option("--subject", "subject_pairs", multiple=True, metavar="KEY=VALUE", help="issue: a subject field.")
@click.option("--spec", "key_spec", help="issue: key spec, e.g. ec-p256 (default: the profile's first).")
@click.option("--ca", type=click.Choice(["builtin", "external"]), default="builtin", show_default=True)
@click.option("--reason", help="revoke: RFC 5280 reason, e.g. keyCompromise.")
@click.option("--comment")
@pass_ctx
def request_cmd(ctx: Context, action: str, username: str, org_code: str, credential_ids: tuple[str, ...],
                name: str | None, owner_username: str | None, profile: str | None, subject_profile: str | None,
                subject_pairs: tuple[str, ...], key_spec: str | None, ca: str, reason: str | None,
                comment: str | None) -> None:
    """Make a request; it waits for approvals (signer cert approve)."""
    from signer.http.bodies import validate

    actor = person(ctx, username)
    subject: dict[str, str] = {}
    for pair in subject_pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput(f"--subject takes KEY=VALUE, not {pair!r}")
        subject[key] = value
    with ctx.services.db.session() as s:
        org = s.scalar(select(Organisation).where(Organisation.code == org_code))
        if org is None:
            raise NotFound(f"no organisation {org_code}")
        owner = s.scalar(select(User.id).where(User.username == owner_username)) if owner_username else None
        fields = {"action": action, "organisation_id": org.id, "credential_ids": list(credential_ids), "name": name,
                  "owner_user_id": owner, "profile": profile, "subject_profile": subject_profile, "subject": subject,
                  "key_spec": key_spec, "ca": ca, "reason": reason, "comment": comment}
        body = validate(lifecycle.RequestBody, {k: v for k, v in fields.items() if v not in (None, [], {})})
        click.echo(json.dumps(summary(lifecycle.submit(s, actor, body)), ensure_ascii=False))


def _decide(ctx: Context, request_id: str, username: str, decision: str, comment: str | None) -> None:
    actor = person(ctx, username)
    with ctx.services.db.session() as s:
        request = lifecycle.decide(s, actor, request_id, "approve" if decision == "approve" else "reject", comment)
        click.echo(json.dumps(summary(request), ensure_ascii=False))


@cert_group.command("approve")
@click.argument("request_id")
@click.option("--as", "username", required=True)
@click.option("--comment")
@pass_ctx
def approve_cmd(ctx: Context, request_id: str, username: str, comment: str | None) -> None:
    """Approve a request (the last approval needed queues it for the hsm worker)."""
    _decide(ctx, request_id, username, "approve", comment)


@cert_group.command("reject")
@click.argument("request_id")
@click.option("--as", "username", required=True)
@click.option("--comment")
@pass_ctx
def reject_cmd(ctx: Context, request_id: str, username: str, comment: str | None) -> None:
    """Reject a request: one rejection ends it."""
    _decide(ctx, request_id, username, "reject", comment)


@cert_group.command("list")
@click.option("--status", type=click.Choice([s.value for s in RequestStatus]))
@pass_ctx
def list_cmd(ctx: Context, status: str | None) -> None:
    """Requests, newest first, one JSON object per line."""
    from signer.principal import SYSTEM

    with ctx.services.db.session(readonly=True) as s:
        for request in lifecycle.list_requests(s, SYSTEM, status):
            click.echo(json.dumps(summary(request), ensure_ascii=False))


@cert_group.command("run")
@click.argument("request_id")
@pass_ctx
def run_cmd(ctx: Context, request_id: str) -> None:
    """Carry out an approved request in this process now (when no hsm worker runs)."""
    from signer.lifecycle.executor import Context as Execution
    from signer.lifecycle.executor import execute

    status = execute(Execution(ctx.services.db, ctx.services.hsm(), ctx.settings.public_url), request_id)
    click.echo(json.dumps({"id": request_id, "status": status}))


@cert_group.command("csr")
@click.argument("request_id")
@click.option("--position", default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@pass_ctx
def csr_cmd(ctx: Context, request_id: str, position: int, out: Path) -> None:
    """Write the PKCS#10 request of one item (PEM), for the Government CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    with ctx.services.db.session(readonly=True) as s:
        request = s.get(CertificateRequest, request_id)
        item = next((i for i in request.items if i.position == position), None) if request else None
        if item is None or item.csr_der is None:
            raise NotFound("no CSR for that request item")
        out.write_bytes(x509.load_der_x509_csr(item.csr_der).public_bytes(Encoding.PEM))
    click.echo(json.dumps({"id": request_id, "position": position, "csr": str(out)}))


def _organisation_id(ctx: Context, code: str) -> str:
    with ctx.services.db.session(readonly=True) as s:
        org_id = s.scalar(select(Organisation.id).where(Organisation.code == code))
    if org_id is None:
        raise NotFound(f"no organisation {code}")
    return org_id


@cert_group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "username", required=True)
@click.option("--org", "org_code", required=True, help="Whose certificates (QCVN 102 code).")
@pass_ctx
def import_cmd(ctx: Context, files: tuple[Path, ...], username: str, org_code: str) -> None:
    """Track existing certificates (keys on USB tokens or SIM cards): PEM/DER/PKCS#7 files, or CSV
    files with a `pem` column (and `holder`, `organisation_code`, `note`). Prints the per-row report."""
    from signer.pki.inventory import import_inventory

    actor, org_id = person(ctx, username), _organisation_id(ctx, org_code)
    csv_files = [f for f in files if f.suffix.lower() == ".csv"]
    if len(csv_files) > 1:
        raise InvalidInput("import one CSV file at a time")
    certs = [(f.name, f.read_bytes()) for f in files if f not in csv_files]
    with ctx.services.db.session() as s:
        report = import_inventory(s, actor, org_id, pem_files=certs or None,
                                  csv_data=csv_files[0].read_bytes() if csv_files else None)
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False))


@cert_group.command("summary")
@click.argument("request_id")
@click.option("--as", "username", required=True)
@click.option("--position", default=0, show_default=True)
@click.option("--pdf", "pdf_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the one-page PDF summary here.")
@pass_ctx
def summary_cmd(ctx: Context, request_id: str, username: str, position: int, pdf_out: Path | None) -> None:
    """The form data for the Government CA (JSON on stdout; PDF with --pdf)."""
    from signer.pki import external

    actor = person(ctx, username)
    with ctx.services.db.session() as s:
        item = external.load_item(s, actor, request_id, position)
        data = external.export(s, item.id)
    if pdf_out is not None:
        pdf_out.write_bytes(external.summary_pdf(data))
    click.echo(json.dumps(data, ensure_ascii=False))


@cert_group.command("import-issued")
@click.argument("request_id")
@click.argument("certificate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--as", "username", required=True)
@click.option("--position", default=0, show_default=True)
@pass_ctx
def import_issued_cmd(ctx: Context, request_id: str, certificate: Path, username: str, position: int) -> None:
    """Import the Government CA's certificate and chain (PEM, DER or PKCS#7) for an awaiting item;
    refused when its key is not the HSM key or its chain does not verify."""
    from signer.pki import external

    actor = person(ctx, username)
    with ctx.services.db.session() as s:
        item = external.load_item(s, actor, request_id, position)
        row = external.import_issued(s, actor, item.id, certificate.read_bytes(),
                                     trust_roots_file=ctx.settings.trust_roots_file)
        click.echo(json.dumps({"certificate_id": row.id, "credential_id": row.credential_id, "serial": row.serial,
                               "fingerprint_sha256": row.fingerprint_sha256}))


@cert_group.command("policy")
@click.argument("action", type=click.Choice([a.value for a in Action]))
@click.argument("profile", default="*")
@click.option("--as", "username", required=True, help="An admin.")
@click.option("--approvals", type=click.IntRange(1, 5), required=True, help="How many approvers.")
@click.option("--role", "roles", multiple=True, type=click.Choice(["admin", "ra_officer"]), required=True)
@click.option("--ttl-hours", type=click.IntRange(1, 720), default=72, show_default=True)
@pass_ctx
def policy_cmd(ctx: Context, action: str, profile: str, username: str, approvals: int, roles: tuple[str, ...],
               ttl_hours: int) -> None:
    """Set the approval policy of ACTION on PROFILE (`*`: every profile)."""
    from signer.lifecycle.policy import PolicyBody, set_policy
    from signer.models import Role

    actor = person(ctx, username)
    body = PolicyBody(approvals_required=approvals, roles={Role(r) for r in roles}, ttl_hours=ttl_hours)
    with ctx.services.db.session() as s:
        saved = set_policy(s, actor, action, profile, body)
        click.echo(json.dumps({"action": saved.action, "profile": saved.profile,
                               "approvals_required": saved.approvals_required, "roles": list(saved.roles),
                               "ttl_hours": saved.ttl_hours}))
