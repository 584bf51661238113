"""Public PKI endpoints of the built-in CA: CA certificates, CRLs, the OCSP responder and the
RFC 3161 TSA."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib

from cryptography.x509 import ocsp as x509_ocsp
from flask import Blueprint, Response, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from signer.errors import InvalidInput, NotFound, PayloadTooLarge, ServiceUnavailable, UnsupportedMediaType
from signer.http.auth import services
from signer.pki import ocsp
from signer.queues import HSM, queue
from signer.signing.models import Crl, PkiAuthority

bp = Blueprint("pki", __name__)
TSA_WAIT_S = 10
MAX_TSA_REQUEST = 16 * 1024
#: The path certificates name in their AIA (builtin_ca.CaUrls.ocsp_url); GET appends the request.
OCSP_PATH = "/pki/ocsp"
OCSP_WAIT_S = 5
MAX_OCSP_REQUEST = 8 * 1024  # one CertID with a nonce is ~100 bytes; signed requests a few KiB
# Caches may keep a pre-signed response this long at most (and never past its nextUpdate): a
# revocation reaches OCSP at its commit, so a long max-age would only delay it for cached clients.
OCSP_MAX_AGE_S = 60
OCSP_MEDIA = "application/ocsp-response"


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


def _ocsp_reply(request_der: bytes) -> Response:
    # Answer from the pre-signed table; only what it lacks goes to the hsm worker (this tier has no
    # HSM), and a worker that does not answer in time becomes tryLater rather than an HTTP error.
    now = dt.datetime.now(dt.UTC)
    with services().db.session(readonly=True) as s:
        found = ocsp.lookup(s, request_der, now)
    if found.der is not None:
        resp = Response(found.der, mimetype=OCSP_MEDIA)
        if found.next_update is not None and found.this_update is not None:
            left = int((found.next_update - now).total_seconds())
            resp.headers["Cache-Control"] = f"public, max-age={max(0, min(left, OCSP_MAX_AGE_S))}, no-transform"
            resp.headers["ETag"] = f'"{hashlib.sha256(found.der).hexdigest()[:32]}"'
            resp.last_modified = found.this_update
        else:
            resp.headers["Cache-Control"] = "no-store"  # unsigned error responses
        return resp
    from signer.jobs.pki import ocsp_respond

    job = queue(services(), HSM).enqueue(ocsp_respond, request_der, result_ttl=60, failure_ttl=60)
    result = job.latest_result(timeout=OCSP_WAIT_S)
    answer = None if result is None or result.type != result.Type.SUCCESSFUL else result.return_value
    if not isinstance(answer, bytes):
        answer = ocsp.error_response(x509_ocsp.OCSPResponseStatus.TRY_LATER)
    resp = Response(answer, mimetype=OCSP_MEDIA)
    resp.headers["Cache-Control"] = "no-cache"  # signed for this request (unknown serial, nonce echoed)
    return resp


@bp.post(OCSP_PATH)
def ocsp_post() -> ResponseReturnValue:
    """OCSP (RFC 6960 A.1) by POST: the DER request as the body.

    Answered from responses the hsm worker pre-signed (no nonce, as RFC 5019 allows, even when the
    request has one); serials the CA never issued get a freshly signed `unknown`, unknown issuers an
    unsigned `unauthorized`, garbage `malformedRequest` (all as HTTP 200 OCSP responses).
    """
    if request.mimetype != "application/ocsp-request":
        raise UnsupportedMediaType("send application/ocsp-request")
    if (request.content_length or 0) > MAX_OCSP_REQUEST:
        raise PayloadTooLarge(f"an OCSP request is at most {MAX_OCSP_REQUEST} bytes")
    request.max_content_length = MAX_OCSP_REQUEST
    return _ocsp_reply(request.get_data())


@bp.get(f"{OCSP_PATH}/<path:encoded>", merge_slashes=False)
def ocsp_get(encoded: str) -> ResponseReturnValue:
    """OCSP (RFC 6960 A.1) by GET: the DER request, base64 and URL-encoded, after the path.

    Cacheable: `Cache-Control: max-age` never reaches past the response's nextUpdate.
    """
    if len(encoded) > MAX_OCSP_REQUEST * 2:
        raise PayloadTooLarge(f"an OCSP request is at most {MAX_OCSP_REQUEST} bytes")
    try:
        # Some clients leave '+' unescaped and proxies may turn it into a space.
        der = base64.b64decode(encoded.replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        der = b""  # answered malformedRequest, like any other garbage
    if len(der) > MAX_OCSP_REQUEST:
        raise PayloadTooLarge(f"an OCSP request is at most {MAX_OCSP_REQUEST} bytes")
    return _ocsp_reply(der)
