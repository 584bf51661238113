"""The one place where exceptions become application/problem+json (RFC 9457) responses.

Problem types are stable URNs (``urn:signer:problem:<slug>``); clients branch on them, never on
the human-readable text. Unexpected exceptions become a bare 500 with no stack trace; denied
actions (401/403/404) are audited in their own transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, json, request
from werkzeug.exceptions import HTTPException

import hsm
from exchange.errors import AxisRejected, ExchangeError, PacketError
from signer import audit
from signer.errors import (
    AxisRefused,
    Forbidden,
    InvalidInput,
    InvalidPacket,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    SignerError,
    Unauthenticated,
)
from signer.principal import ANONYMOUS, Principal

log = logging.getLogger(__name__)
PROBLEM_TYPE = "urn:signer:problem:"
_DENIALS = (Unauthenticated, Forbidden, NotFound)


def problem_response(status: int, slug: str, title: str, detail: str, **extra: Any) -> Response:
    body = {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    if request:
        body["instance"] = request.path
    resp = Response(json.dumps(body, ensure_ascii=False), status=status,
                    mimetype="application/problem+json")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="signer"'
    return resp


def _from_hsm(exc: hsm.HsmError) -> SignerError:
    if isinstance(exc, hsm.KeyNotFound):
        return NotFound("the credential's key is not on the HSM")
    if isinstance(exc, hsm.InvalidRequest | hsm.MechanismUnsupported):
        return InvalidInput(str(exc))
    return ServiceUnavailable("the HSM is not available; try again later")


def _audit_denial(exc: SignerError) -> None:
    principal: Principal = g.get("principal", ANONYMOUS)
    services = g.get("services")
    if services is None:
        return
    try:
        audit.record_now(
            services.db, actor=principal.ref, action=f"http.{request.method.lower()}",
            target=request.path[:160], outcome=audit.Outcome.DENIED,
            organisation_id=principal.organisation_id,
            detail={"problem": exc.slug, "endpoint": request.endpoint or ""},
        )
    except Exception:  # the denial still answers even when the audit store is down
        log.exception("could not audit a denied request")


def _from_exchange(exc: ExchangeError) -> SignerError:
    if isinstance(exc, PacketError):
        return InvalidPacket(str(exc), code=exc.code)
    if isinstance(exc, AxisRejected):
        return AxisRefused(str(exc), code=exc.error_code)
    return ServiceUnavailable(f"the axis is not reachable: {exc}")


def handle_signer_error(exc: SignerError) -> Response:
    if isinstance(exc, _DENIALS):
        _audit_denial(exc)
    return problem_response(exc.status, exc.slug, exc.title, exc.detail, **exc.extra)


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    app.register_error_handler(SignerError, handle_signer_error)

    @app.errorhandler(hsm.HsmError)
    def _hsm(exc: hsm.HsmError) -> Response:
        log.warning("hsm error: %s", type(exc).__name__)
        return handle_signer_error(_from_hsm(exc))

    @app.errorhandler(ExchangeError)
    def _exchange(exc: ExchangeError) -> Response:
        return handle_signer_error(_from_exchange(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            return handle_signer_error(PayloadTooLarge("the request body is too large"))
        if status == 404:
            return problem_response(404, "not-found", "Not found", "no such endpoint")
        slug = (exc.name or "error").lower().replace(" ", "-")
        return problem_response(status, slug, exc.name or "Error", exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "internal-error", "Internal error",
                                "an unexpected error occurred; it has been logged")
