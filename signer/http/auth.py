"""Who is calling: API clients by ``Authorization: Bearer <key>``, people by session cookie."""

from __future__ import annotations

import logging
import time

from flask import Response, after_this_request, current_app, g, request, session

from signer.directory import api_client_use_due, authenticate_api_key, record_api_client_use
from signer.errors import Unauthenticated
from signer.models import User
from signer.principal import ANONYMOUS, Principal
from signer.services import Services

log = logging.getLogger(__name__)


def services() -> Services:
    svc: Services = current_app.extensions["signer"]
    return svc


def load_principal() -> None:
    """``before_request``: set ``g.principal`` (anonymous when no credentials are presented)."""
    svc = g.services = services()
    g.principal = ANONYMOUS
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("use 'Authorization: Bearer <API key>'")
        with svc.db.session(readonly=True) as db:
            client = authenticate_api_key(db, token.strip())
            if client is None:
                raise Unauthenticated("the API key is not valid")
            g.principal = Principal(kind="api_client", id=client.id,
                                    organisation_id=client.organisation_id,
                                    scopes=client.scope_set, name=client.name)
            if api_client_use_due(client.last_used_at):
                # Recorded only once the request has succeeded: a denied one writes nothing but
                # its audit row. Per request, so app.py needs no extra hook.
                after_this_request(record_client_use)
        return
    uid = session.get("uid")
    if uid is None:
        return
    with svc.db.session(readonly=True) as db:
        user = db.get(User, uid)
        fresh = time.time() - float(session.get("iat", 0)) < svc.settings.session_lifetime_s
        if user is None or not user.active or user.session_version != session.get("sv") or not fresh:
            session.clear()
            return
        g.principal = Principal(kind="user", id=user.id, organisation_id=user.organisation_id,
                                roles=user.roles, name=user.username)


def record_client_use(response: Response) -> Response:
    """After a successful (status < 400) request by an API client, record its use
    (``api_clients.last_used_at``, at most once a minute). Registered per request by
    :func:`load_principal`; harmless if also registered as an ``after_request`` hook."""
    principal: Principal = g.get("principal", ANONYMOUS)
    if (principal.kind != "api_client" or response.status_code >= 400
            or g.get("client_use_recorded")):
        return response
    g.client_use_recorded = True
    try:
        with services().db.session() as db:
            record_api_client_use(db, principal.id)
    except Exception:  # bookkeeping only: never turn a served request into an error
        log.exception("could not record the use of API client %s", principal.id)
    return response


def start_session(user: User) -> None:
    session.clear()
    session.permanent = True
    session.update(uid=user.id, sv=user.session_version, iat=time.time())


def current_principal() -> Principal:
    """The authenticated caller, or 401."""
    principal: Principal = g.get("principal", ANONYMOUS)
    if principal.kind == "anonymous":
        raise Unauthenticated("sign in or present an API key")
    return principal
