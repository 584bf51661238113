"""``signer axis ...``: the local axis, axis accounts, directory sync, polling and the outbox."""

from __future__ import annotations

import json
import logging
from typing import TextIO

import click
from sqlalchemy import select

from signer.cli_context import Context, pass_ctx
from signer.directory import find_organisation_by_code
from signer.interchange import delivery, directory, local_axis, receiving
from signer.interchange.accounts import set_account
from signer.interchange.models import OutboxItem, OutboxState
from signer.principal import SYSTEM


@click.group("axis")
def axis_group() -> None:
    """The national document-exchange axis: local axis, accounts, polling, outbox."""


@axis_group.command("serve")
@click.option("--bind", help="host:port (default: SIGNER_AXIS_BIND)")
@pass_ctx
def serve(ctx: Context, bind: str | None) -> None:
    """Run the local axis (same endpoints and authentication as the national axis)."""
    logging.getLogger().setLevel(logging.INFO)
    host, _, port = (bind or ctx.settings.axis_bind).rpartition(":")
    server = local_axis.make_server(ctx.settings, host or "127.0.0.1", int(port))
    click.echo(f"local axis: {server.url} (configuration {local_axis.config_path(ctx.settings)})")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@axis_group.command("register")
@click.argument("org_codes", nargs=-1, required=True)
@pass_ctx
def register(ctx: Context, org_codes: tuple[str, ...]) -> None:
    """Put organisations on the local axis and set their accounts (development and demo)."""
    with ctx.services.db.session() as db:
        orgs = [find_organisation_by_code(db, code) for code in org_codes]
        db.expunge_all()
    for org in orgs:
        sid = local_axis.register(ctx.services, [org])
        click.echo(f"{org.code}: system id {sid} on the local axis")


@axis_group.command("account")
@click.argument("org_code")
@click.option("--system-id", required=True)
@click.option("--secret-file", type=click.File("r"), required=True, help="File holding the shared secret.")
@click.option("--endpoint", help="Axis endpoint for this organisation (default: SIGNER_AXIS_URL).")
@pass_ctx
def account(ctx: Context, org_code: str, system_id: str, secret_file: TextIO,
            endpoint: str | None) -> None:
    """Set an organisation's account on the national axis (system id and shared secret)."""
    secret = secret_file.read().strip()
    with ctx.services.db.session() as db:
        org = find_organisation_by_code(db, org_code)
        set_account(db, ctx.services, SYSTEM, organisation_id=org.id, system_id=system_id, secret=secret,
                    endpoint=endpoint)
    click.echo(f"{org_code}: axis account {system_id} set")


@axis_group.command("sync")
@pass_ctx
def sync(ctx: Context) -> None:
    """Synchronise the directory of connected units now."""
    click.echo(f"{directory.sync(ctx.services)} units")


@axis_group.command("poll")
@pass_ctx
def poll(ctx: Context) -> None:
    """Poll the axis now for every organisation with an account, and print what arrived."""
    for organisation_id, report in receiving.poll_all(ctx.services).items():
        click.echo(json.dumps({"organisation_id": organisation_id, "documents": report.documents,
                               "duplicates": report.duplicates, "statuses": report.statuses,
                               "follow_ups": report.follow_ups, "refused": report.refused}))


@axis_group.command("outbox")
@click.option("--state", type=click.Choice([s.value for s in OutboxState]), default=OutboxState.DEAD.value,
              show_default=True)
@pass_ctx
def outbox(ctx: Context, state: str) -> None:
    """List outbox rows in a state (dead letters by default) with their last error."""
    with ctx.services.db.session(readonly=True) as db:
        for item in db.scalars(select(OutboxItem).where(OutboxItem.state == state).order_by(OutboxItem.created_at)):
            click.echo(f"{item.id}  {item.kind:6} -> {item.recipient:16} attempts={item.attempts} "
                       f"{item.last_error or ''}")


@axis_group.command("retry")
@click.argument("item_id")
@pass_ctx
def retry(ctx: Context, item_id: str) -> None:
    """Give a dead outbox row another round of delivery attempts."""
    with ctx.services.db.session() as db:
        delivery.retry(db, item_id)
    click.echo(f"{item_id}: pending again")
