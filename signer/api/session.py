"""People sign in with username and password, or on the phone with a passkey."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, session
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from signer import audit, directory
from signer.api import views
from signer.devices import login as passkey_signin
from signer.errors import Unauthenticated
from signer.http.auth import current_principal, services, start_session
from signer.http.bodies import parse_json
from signer.models import User

bp = Blueprint("session", __name__, url_prefix="/v1")


class LoginBody(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@bp.post("/session")
def login() -> ResponseReturnValue:
    body = parse_json(LoginBody)
    svc = services()
    with svc.db.session() as db:
        user = directory.authenticate_password(db, svc.passwords, body.username, body.password)
        if user is not None:
            audit.record(db, actor=f"user:{user.id}", action="session.login", target=f"user:{user.id}",
                         organisation_id=user.organisation_id)
            start_session(user)
            return jsonify(views.user(user))
    # Audited as a denial by the error handler; the username is not logged (it may be a password
    # typed into the wrong field).
    raise Unauthenticated("wrong username or password")


class PasskeyLoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    login_id: str = Field(min_length=1, max_length=64, description="from `POST /v1/session/passkey/options`")
    credential: dict[str, Any] = Field(description="the PublicKeyCredential from navigator.credentials.get, "
                                                   "binary fields base64url (as toJSON() gives)")


@bp.post("/session/passkey/options")
def passkey_options() -> ResponseReturnValue:
    """WebAuthn request options for signing in with a passkey (valid for one attempt, 120 s)"""
    return jsonify(passkey_signin.begin(services()))


@bp.post("/session/passkey")
def passkey_login() -> ResponseReturnValue:
    """Sign in with a passkey (the navigator.credentials.get result for the options' challenge)"""
    body = parse_json(PasskeyLoginBody)
    user = passkey_signin.finish(services(), body.login_id, body.credential)
    start_session(user)  # only after the commit: a failed commit leaves no session behind
    return jsonify(views.user(user))


@bp.delete("/session")
def logout() -> ResponseReturnValue:
    """End the session for good: the cookie is signed, not stored, so clearing it is not enough
    (a copy would stay valid until it expires). Bumping the user's session version revokes every
    cookie issued before, which also signs the user out of their other sessions."""
    principal = current_principal()
    session.clear()
    with services().db.session() as db:
        if principal.kind == "user":
            user = db.get(User, principal.id)
            if user is not None:
                user.session_version += 1
        audit.record(db, actor=principal.ref, action="session.logout", target=principal.ref,
                     organisation_id=principal.organisation_id)
    return "", 204


@bp.get("/me")
def me() -> ResponseReturnValue:
    principal = current_principal()
    return jsonify(kind=principal.kind, id=principal.id, organisation_id=principal.organisation_id,
                   roles=sorted(r.value for r in principal.roles), scopes=sorted(principal.scopes),
                   name=principal.name)
