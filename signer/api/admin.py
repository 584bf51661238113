"""``/v1/admin``: organisations, people and API clients (admins write; RA officers and auditors read)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from signer import directory
from signer.api import views
from signer.http.auth import current_principal, services
from signer.http.bodies import parse_json
from signer.models import Role
from signer.secretbox import SecretBox

bp = Blueprint("admin", __name__, url_prefix="/v1/admin")


class OrganisationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=255)
    parent_id: str = Field(min_length=1, max_length=36)


class UserBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")
    full_name: str = Field(min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    organisation_id: str = Field(min_length=1, max_length=36)
    roles: set[Role] = Field(min_length=1)
    password: str | None = Field(default=None, min_length=12, max_length=1024)


class ApiClientBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255)
    organisation_id: str = Field(min_length=1, max_length=36)
    scopes: set[str] = Field(min_length=1)


@bp.get("/organisations")
def list_organisations() -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(items=[views.organisation(o) for o in directory.list_organisations(db, principal)])


@bp.post("/organisations")
def create_organisation() -> ResponseReturnValue:
    principal = current_principal()
    body = parse_json(OrganisationBody)
    with services().db.session() as db:
        org = directory.create_organisation(db, principal, code=body.code, name=body.name,
                                            parent_id=body.parent_id)
        return jsonify(views.organisation(org)), 201


@bp.get("/organisations/<org_id>")
def get_organisation(org_id: str) -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(views.organisation(directory.get_organisation(db, principal, org_id)))


@bp.get("/users")
def list_users() -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        users = directory.list_users(db, principal, request.args.get("organisation_id"))
        return jsonify(items=[views.user(u) for u in users])


@bp.post("/users")
def create_user() -> ResponseReturnValue:
    principal = current_principal()
    body = parse_json(UserBody)
    svc = services()
    with svc.db.session() as db:
        user = directory.create_user(db, svc.passwords, principal, username=body.username,
                                     full_name=body.full_name, email=body.email,
                                     organisation_id=body.organisation_id, roles=body.roles,
                                     password=body.password)
        return jsonify(views.user(user)), 201


@bp.get("/users/<user_id>")
def get_user(user_id: str) -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(views.user(directory.get_user(db, principal, user_id)))


@bp.get("/api-clients")
def list_api_clients() -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(items=[views.api_client(c) for c in directory.list_api_clients(db, principal)])


@bp.post("/api-clients")
def create_api_client() -> ResponseReturnValue:
    principal = current_principal()
    body = parse_json(ApiClientBody)
    with services().db.session() as db:
        box = SecretBox(services().settings.require_secret_key(), "webhook")
        new = directory.create_api_client(db, principal, name=body.name,
                                          organisation_id=body.organisation_id, scopes=body.scopes,
                                          webhook_box=box)
        # The key and webhook secret are returned exactly once; the key is stored only as a hash.
        return jsonify(views.api_client(new.client) | {"api_key": new.key.token,
                                                        "webhook_secret": new.webhook_secret}), 201
