"""Public PKI endpoints of the built-in CA: CA certificates, CRLs, and the RFC 3161 TSA."""

from __future__ import annotations

from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from signer.errors import InvalidInput, NotFound, ServiceUnavailable, UnsupportedMediaType
from signer.http.auth import services
from signer.queues import HSM, queue
from signer.signing.models import Crl, PkiAuthority

bp = Blueprint("pki", __name__)
TSA_WAIT_S = 10
MAX_TSA_REQUEST = 16 * 1024


def _pem(label: str, der: bytes) -> str:
    import base64
    import textwrap

    body = "\n".join(textwrap.wrap(base64.b64encode(der).decode(), 64))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"


def _authority(slug: str) -> PkiAuthority:
    with services().db.session() as s:
        found = s.scalar(select(PkiAuthority).where(PkiAuthority.slug == slug))
        if found is None:
            raise NotFound("no such certification authority")
        return found


@bp.get("/pki/ca/<slug>.cer")
def ca_certificate(slug: str) -> ResponseReturnValue:
    der = _authority(slug).certificate_der
    if request.args.get("format") == "pem":
        return Response(_pem("CERTIFICATE", der), mimetype="application/x-pem-file")
    return Response(der, mimetype="application/pkix-cert")


@bp.get("/pki/crl/<slug>.crl")
def crl(slug: str) -> ResponseReturnValue:
    ca = _authority(slug)
    with services().db.session() as s:
        latest = s.scalar(select(Crl).where(Crl.authority_id == ca.id).order_by(Crl.number.desc()).limit(1))
        if latest is None:
            raise NotFound("no CRL published yet")
        der = latest.der
    if request.args.get("format") == "pem":
        return Response(_pem("X509 CRL", der), mimetype="application/x-pem-file")
    resp = Response(der, mimetype="application/pkix-crl")
    resp.headers["Cache-Control"] = "max-age=300"
    return resp


@bp.post("/tsa")
def timestamp() -> ResponseReturnValue:
    """RFC 3161 over HTTP: the hsm worker signs; this tier only relays."""
    if request.mimetype != "application/timestamp-query":
        raise UnsupportedMediaType("send application/timestamp-query")
    request.max_content_length = MAX_TSA_REQUEST
    body = request.get_data()
    if not body:
        raise InvalidInput("empty timestamp request")
    from signer.jobs.pki import timestamp as timestamp_job

    job = queue(services(), HSM).enqueue(timestamp_job, body, result_ttl=60, failure_ttl=60)
    result = job.latest_result(timeout=TSA_WAIT_S)
    if result is None or result.type != result.Type.SUCCESSFUL:
        raise ServiceUnavailable("the timestamp authority did not answer in time")
    return Response(result.return_value, mimetype="application/timestamp-reply")
