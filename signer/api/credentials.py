"""``/v1/credentials``: the signing credentials a caller's organisation holds (read-only here), and
``/v1/certificates``: the certificate registry (credentials' certificates and inventory ones, whose
keys are on USB tokens or SIM cards), for expiry dashboards."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from signer import credentials
from signer.api import views
from signer.errors import InvalidInput, UnsupportedMediaType
from signer.http.auth import current_principal, services

bp = Blueprint("credentials", __name__, url_prefix="/v1/credentials")


@bp.get("")
def list_credentials() -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(items=[views.credential(c) for c in credentials.list_credentials(db, principal)])


@bp.put("/<credential_id>/images/<kind>")
def put_image(credential_id: str, kind: str) -> ResponseReturnValue:
    """Upload the signature image (personal) or seal image (organisation): a transparent PNG."""
    principal = current_principal()
    if request.mimetype != "image/png":
        raise UnsupportedMediaType("send the image as image/png")
    width = request.args.get("width_mm")
    if width is not None and not (width.isdigit() and 5 <= int(width) <= 100):
        raise InvalidInput("width_mm must be 5..100", field="width_mm")
    svc = services()
    with svc.db.session() as db:
        image = credentials.set_image(db, svc.blobs, principal, credential_id, kind, request.get_data(),
                                      int(width) if width else None)
        return jsonify(kind=image.kind, sha256=image.sha256, width_mm=image.width_mm), 200


@bp.get("/<credential_id>")
def get_credential(credential_id: str) -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(views.credential(credentials.get_credential(db, principal, credential_id)))


certificates_bp = Blueprint("certificates", __name__, url_prefix="/v1/certificates")
_WITHIN = re.compile(r"^(\d{1,4})d$")


@certificates_bp.get("")
def list_certificates() -> ResponseReturnValue:
    """Certificates, soonest expiry first; `?expiring_within=30d` and `?status=good|revoked|expired` for dashboards"""
    from signer.pki import registry

    principal = current_principal()
    within = request.args.get("expiring_within")
    match = _WITHIN.match(within) if within is not None else None
    if within is not None and match is None:
        raise InvalidInput("expiring_within is a number of days, e.g. 30d", field="expiring_within")
    status = request.args.get("status")
    if status is not None and status not in registry.STATUSES:
        raise InvalidInput(f"status is one of {', '.join(registry.STATUSES)}", field="status")
    with services().db.session(readonly=True) as db:
        rows = registry.list_certificates(db, principal, status=status, expiring_within=timedelta(
            days=int(match.group(1))) if match else None)
        return jsonify(items=[views.certificate(r.certificate, r.status, r.credential_status) for r in rows])
