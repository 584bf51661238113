"""``/v1/sign-requests``: document systems ask for signatures; holders approve or refuse."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError

from signer.errors import Conflict, Forbidden, InvalidInput, NotFound, UnsupportedMediaType
from signer.http.auth import current_principal, services
from signer.http.bodies import parse_json
from signer.models import User
from signer.principal import Principal
from signer.services import Services
from signer.signing import challenge as chal
from signer.signing import dispatch, inbox
from signer.signing import requests as workflow
from signer.signing.errors import WrongPin
from signer.signing.models import DocKind, DocState, RequestState, SignRequest
from signer.signing.schemas import ApprovalIn, RefusalIn, SignRequestIn

bp = Blueprint("signing", __name__, url_prefix="/v1/sign-requests")
MAX_WAIT_S = 60
RECHECK_S = 1.0  # a long poll re-reads the database at least this often, announced or not
log = logging.getLogger(__name__)
_MEDIA = {DocKind.PDF.value: ("application/pdf", "pdf"),
          DocKind.CMS.value: ("application/pkcs7-signature", "p7s"),
          DocKind.HASH.value: ("application/octet-stream", "sig")}


def view(req: SignRequest) -> dict[str, Any]:
    from signer.api.views import iso

    # One url_for per request, not per document: a batch holds up to 1,000 hashes.
    base = url_for("signing.get", request_id=req.id) + "/documents"
    # The document system shows the verification code; the holder's phone must find it among
    # three choices, so people never receive it (DESIGN.md section 5).
    shows_code = current_principal().kind != "user"
    choices = (chal.code_choices(bytes.fromhex(req.challenge))
               if not shows_code and req.state == RequestState.AWAITING_APPROVAL.value else None)
    return {
        "id": req.id, "state": req.state, "result": req.result, "reason": req.reason,
        "detail": req.detail, "credential_id": req.credential_id,
        "verification_code": req.verification_code if shows_code else None, "code_choices": choices,
        "challenge": req.challenge,
        "expires_at": iso(req.expires_at),
        "created_at": iso(req.created_at), "completed_at": iso(req.completed_at) if req.completed_at else None,
        "documents": [{
            "id": d.id, "name": d.name, "format": {"pdf": "pades", "cms": "cades", "hash": "raw"}[d.kind],
            "profile": d.profile, "level": d.level, "state": d.state, "reason": d.reason,
            "dtbsr": d.dtbsr, "page_count": d.page_count,
            "signed_url": f"{base}/{d.id}/signed" if d.state == DocState.COMPLETED.value else None,
            # Raw signatures are small: inline, so a batch of hashes needs no download per hash.
            "signature": base64.b64encode(d.signature).decode() if d.signature is not None else None,
        } for d in req.documents],
    }


def _body_and_files() -> tuple[SignRequestIn, dict[str, bytes]]:
    settings = services().settings
    if request.mimetype == "multipart/form-data":
        request.file_limit = settings.max_document_bytes  # type: ignore[attr-defined]
        request.max_content_length = settings.max_document_bytes * 100 + (1 << 20)
        raw = request.form.get("request")
        if raw is None:
            raise InvalidInput("multipart uploads carry the JSON body in a part named 'request'")
        try:
            body = SignRequestIn.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidInput("the request body is not valid", errors=[
                {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)]) from None
        files = {name: storage.read() for name, storage in request.files.items()}
        return body, files
    if not request.is_json:
        raise UnsupportedMediaType("send application/json (base64 content) or multipart/form-data")
    # base64 grows documents by a third; bigger batches should use multipart.
    request.max_content_length = settings.max_document_bytes * 4 // 3 + (1 << 20)
    return parse_json(SignRequestIn), {}


@bp.post("")
def create() -> ResponseReturnValue:
    principal = current_principal()
    body, files = _body_and_files()
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise InvalidInput("Idempotency-Key must be 1 to 255 characters")
    svc = services()
    with svc.db.session() as db:
        req, created = workflow.create(db, svc.blobs, principal, body, files, idempotency_key=key,
                                       max_document_bytes=svc.settings.max_document_bytes,
                                       trust_roots_file=svc.settings.trust_roots_file,
                                       allow_private_callbacks=svc.settings.webhook_allow_private)
        resp = jsonify(view(req))
    resp.status_code = 202 if created else 200
    resp.headers["Location"] = url_for("signing.get", request_id=req.id)
    return resp


@bp.get("/<request_id>")
def get(request_id: str) -> ResponseReturnValue:
    principal = current_principal()
    raw_wait = request.args.get("wait", "0")
    if not raw_wait.isdigit():
        raise InvalidInput("wait must be a number of seconds", field="wait")
    deadline = time.monotonic() + min(int(raw_wait), MAX_WAIT_S)
    svc, first_state = services(), None
    with _state_changes(svc, request_id if int(raw_wait) > 0 else None) as wait_for_change:
        while True:
            with svc.db.session(readonly=True) as db:
                req = workflow.get_for(db, principal, request_id)
                state = req.state
                first_state = first_state or state
                if RequestState(state).final or state != first_state or time.monotonic() >= deadline:
                    return jsonify(view(req))
            wait_for_change(min(deadline - time.monotonic(), RECHECK_S))


@contextlib.contextmanager
def _state_changes(svc: Services, request_id: str | None) -> Iterator[Callable[[float], None]]:
    """A wait that returns early when the request's state is announced (Redis pub/sub), or a
    plain sleep when Redis cannot subscribe. Subscribed before the first database read, so an
    announcement between that read and the wait is not missed."""
    pubsub = None
    if request_id is not None:
        try:
            pubsub = svc.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(dispatch.state_channel(svc, request_id))
        except RedisError:
            log.warning("long poll without pub/sub: Redis unavailable")
            pubsub = None

    def wait(seconds: float) -> None:
        if seconds <= 0:
            return
        if pubsub is None:
            time.sleep(min(seconds, 0.25))
            return
        try:
            pubsub.get_message(timeout=seconds)
        except RedisError:
            time.sleep(min(seconds, 0.25))

    try:
        yield wait
    finally:
        if pubsub is not None:
            with contextlib.suppress(RedisError):
                pubsub.close()


@bp.post("/<request_id>/cancel")
def cancel(request_id: str) -> ResponseReturnValue:
    principal = current_principal()
    with services().db.session() as db:
        return jsonify(view(workflow.cancel(db, principal, request_id)))


@bp.post("/<request_id>/approval")
def approve(request_id: str) -> ResponseReturnValue:
    principal = current_principal()
    body = parse_json(ApprovalIn)
    svc = services()
    try:
        with svc.db.session() as db:
            workflow.approve(db, principal, request_id, body, svc.pin_hasher)
            req = workflow.get_for(db, principal, request_id)
            return jsonify(view(req)), 202
    except WrongPin as wrong:
        with svc.db.session() as db:
            counted = workflow.count_wrong_pin(db, principal, wrong)
        raise counted from None
    except IntegrityError:
        # The same device signature posted twice at once (PostgreSQL lets both pass the replay
        # check; the unique index stops the second): the first one counts.
        raise Conflict("this approval was already submitted") from None


@bp.post("/<request_id>/refusal")
def refuse(request_id: str) -> ResponseReturnValue:
    principal = current_principal()
    body = parse_json(RefusalIn) if request.content_length else RefusalIn()
    with services().db.session() as db:
        return jsonify(view(workflow.refuse(db, principal, request_id, body.reason)))


@bp.get("/<request_id>/documents/<doc_id>/signed")
def download(request_id: str, doc_id: str) -> ResponseReturnValue:
    principal = current_principal()
    svc = services()
    with svc.db.session(readonly=True) as db:
        req = workflow.get_for(db, principal, request_id)
        doc = next((d for d in req.documents if d.id == doc_id), None)
        if doc is None:
            raise NotFound("document not found")
        if doc.state != DocState.COMPLETED.value or (doc.output_blob is None and doc.signature is None):
            raise NotFound(f"the document is {doc.state}, not signed")
        mimetype, ext = _MEDIA[doc.kind]
        data = svc.blobs.get(doc.output_blob) if doc.output_blob is not None else doc.signature
        filename = f"{doc.position + 1:03d}-signed.{ext}"
    assert data is not None
    resp = Response(data, mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    resp.headers["Repr-Digest"] = f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"
    return resp


def _person() -> Principal:
    principal = current_principal()
    if principal.kind != "user":
        raise Forbidden("for key holders signed in on their phone")
    return principal


@bp.get("/mine/pending")
def my_approvals() -> ResponseReturnValue:
    """Requests waiting for my decision, newest first"""
    principal = _person()
    with services().db.session(readonly=True) as db:
        user = db.get(User, principal.id)
        assert user is not None
        return jsonify(items=[view(r) for r in inbox.pending_for(db, user)])


@bp.get("/mine/decisions")
def my_decisions() -> ResponseReturnValue:
    """My last decisions (approved, refused, wrong code)"""
    principal = _person()
    raw = request.args.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 50:
        raise InvalidInput("limit must be 1 to 50", field="limit")
    with services().db.session(readonly=True) as db:
        user = db.get(User, principal.id)
        assert user is not None
        return jsonify(items=[view(r) for r in inbox.decisions_of(db, user, int(raw))])
