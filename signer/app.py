"""The Flask application factory."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from signer.api import (
    admin,
    audit,
    certificate_files,
    credentials,
    devices,
    docs_page,
    exchange,
    health,
    lifecycle,
    pki,
    session,
    signing,
    verify,
)
from signer.http import problems
from signer.http.auth import load_principal
from signer.http.uploads import SignerRequest
from signer.services import Services
from signer.settings import Settings
from signer.web import phone


def create_app(config: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the web application. Reads the environment only when ``config`` is not given."""
    settings = config or Settings.from_env()
    app = Flask("signer")
    app.config.update(
        SECRET_KEY=settings.require_secret_key(),
        MAX_CONTENT_LENGTH=settings.max_json_bytes,
        SESSION_COOKIE_NAME="signer_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.session_lifetime_s),
    )
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # Vietnamese stays readable
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["signer"] = services or Services.create(settings)
    problems.register(app)
    app.before_request(load_principal)
    app.request_class = SignerRequest
    for bp in (health.bp, session.bp, admin.bp, credentials.bp, credentials.certificates_bp, devices.bp,
               audit.bp, signing.bp, pki.bp, verify.bp, docs_page.bp, phone.bp, lifecycle.bp,
               certificate_files.bp, exchange.bp):
        app.register_blueprint(bp)
    return app
