"""Sign-request workflows on the web side: create (prepare every document), approve, refuse,
cancel, expire. No Flask here; the hsm worker's half is in :mod:`signer.signing.finish`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from signer import audit, outbound
from signer.authz import require_organisation, require_scope
from signer.blobs import BlobStore
from signer.devices import passkeys, pins
from signer.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from signer.models import Credential, CredentialKind, Organisation, Role, User, new_id
from signer.principal import Principal
from signer.security import Passwords
from signer.signing import challenge as chal
from signer.signing import documents
from signer.signing.errors import DeviceUnavailable, RequestStateConflict, WrongPin
from signer.signing.material import credential_material, trust_roots, unusable
from signer.signing.models import (
    Approval,
    Device,
    DeviceKind,
    DeviceStatus,
    DocKind,
    DocState,
    Reason,
    RequestState,
    Result,
    SignDocument,
    SignRequest,
)
from signer.signing.schemas import ApprovalIn, SignRequestIn


def body_fingerprint(body: SignRequestIn, files: dict[str, bytes]) -> str:
    """Identifies a request body for Idempotency-Key: same key + same fingerprint = same request."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(canonical.encode())
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return h.hexdigest()


def _content(doc_index: int, doc: object, files: dict[str, bytes], max_bytes: int) -> bytes | None:
    from signer.signing.schemas import DocumentIn

    assert isinstance(doc, DocumentIn)
    if doc.format == "raw":
        return None
    if doc.file is not None:
        if doc.file not in files:
            raise InvalidInput(f"documents[{doc_index}]: no multipart part named {doc.file!r}",
                               field=f"documents.{doc_index}.file")
        data = files[doc.file]
    else:
        try:
            data = base64.b64decode(doc.content or "", validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"documents[{doc_index}]: content is not base64") from None
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"documents[{doc_index}] is larger than {max_bytes} bytes")
    if not data:
        raise InvalidInput(f"documents[{doc_index}] is empty")
    return data


def _check_callback(url: str | None, allow_private: bool) -> None:
    if url is None:
        return
    try:
        outbound.check_literal(url, allow_private=allow_private)
    except outbound.TargetRefused as exc:
        raise InvalidInput(f"callback_url: {exc}", field="callback_url") from None


def load_credential_for(session: Session, principal: Principal, credential_id: str) -> Credential:
    cred = session.get(Credential, credential_id)
    if cred is None:
        raise NotFound("credential not found")
    require_organisation(session, principal, cred.organisation_id, "credential")
    return cred


def create(session: Session, blobs: BlobStore, principal: Principal, body: SignRequestIn,
           files: dict[str, bytes], *, idempotency_key: str | None,
           max_document_bytes: int, trust_roots_file: Path | None = None,
           allow_private_callbacks: bool = False) -> tuple[SignRequest, bool]:
    """Validate, prepare every document and persist the request awaiting approval.

    Returns ``(request, created)``; ``created`` is False when an Idempotency-Key replays an
    earlier identical request. Nothing is stored when any document fails.
    """
    if principal.kind != "api_client":
        raise Forbidden("sign requests come from document systems (API keys)")
    require_scope(principal, "sign")
    fingerprint = body_fingerprint(body, files)
    if idempotency_key is not None:
        existing = session.scalar(select(SignRequest).where(
            SignRequest.api_client_id == principal.id, SignRequest.idempotency_key == idempotency_key))
        if existing is not None:
            if existing.body_sha256 != fingerprint:
                raise Conflict("this Idempotency-Key was used with a different request body")
            return existing, False
    _check_callback(body.callback_url, allow_private_callbacks)
    cred = load_credential_for(session, principal, body.credential_id)
    material = credential_material(session, blobs, cred)
    org = session.get(Organisation, cred.organisation_id)
    assert org is not None
    roots = trust_roots(session, trust_roots_file)
    now = datetime.now(UTC).replace(microsecond=0)
    prepared = []
    for i, doc in enumerate(body.documents):
        content = _content(i, doc, files, max_document_bytes)
        try:
            prepared.append(documents.prepare(doc, content, material, signing_time=now,
                                              organisation_name=org.name, position=i, trust_roots=roots))
        except InvalidInput as exc:
            exc.detail = f"documents[{i}] ({doc.name}): {exc.detail}"
            raise
    request = SignRequest(organisation_id=cred.organisation_id, api_client_id=principal.id,
                          credential_id=cred.id, state=RequestState.AWAITING_APPROVAL.value,
                          callback_url=body.callback_url, idempotency_key=idempotency_key,
                          body_sha256=fingerprint, expires_at=now + timedelta(seconds=body.expires_in),
                          challenge="", verification_code="")
    session.add(request)
    session.flush()
    written: list[str] = []
    try:
        rows = []
        for i, (doc, prep) in enumerate(zip(body.documents, prepared, strict=True)):
            blob = blobs.put(prep.prepared, prefix="prepared") if prep.prepared is not None else None
            if blob:
                written.append(blob)
            rows.append({
                "id": new_id(), "request_id": request.id, "position": i, "kind": prep.kind, "name": doc.name,
                "profile": doc.profile, "level": doc.level,
                "params": json.dumps(doc.model_dump(mode="json", exclude={"content"}), sort_keys=True,
                                  ensure_ascii=False),
                "content_sha256": prep.content_sha256, "size": prep.size, "page_count": prep.page_count,
                "prepared_blob": blob, "md_algorithm": prep.md_algorithm,
                "document_digest": prep.document_digest.hex() if prep.document_digest else None,
                "reserved_start": prep.reserved_start, "reserved_end": prep.reserved_end,
                "signed_attrs": prep.signed_attrs, "dtbsr": prep.dtbsr.hex(),
                "signing_time": now.isoformat(), "state": DocState.READY.value})
        # One multi-row INSERT: appending 1,000 objects to the relationship costs O(n^2) cascades.
        session.execute(insert(SignDocument), rows)
        c = chal.compute(request.id, cred.id, request.expires_at, [p.dtbsr.hex() for p in prepared])
        request.challenge, request.verification_code = c.hex(), chal.verification_code(c)
        session.flush()
    except IntegrityError:
        for blob in written:
            blobs.delete(blob)
        raise Conflict("this Idempotency-Key is being used by a concurrent request") from None
    except BaseException:
        for blob in written:
            blobs.delete(blob)
        raise
    from signer.signing import dispatch

    dispatch.notify_after_commit(session, request.id)
    audit.record(session, actor=principal.ref, action="sign_request.create",
                 target=f"sign_request:{request.id}", organisation_id=request.organisation_id,
                 detail={"credential_id": cred.id, "documents": len(prepared),
                         "dtbsr": [p.dtbsr.hex() for p in prepared]})
    return request, True


def get_for(session: Session, principal: Principal, request_id: str) -> SignRequest:
    """A request visible to ``principal``: its API client, or people of its organisation."""
    request = session.get(SignRequest, request_id)
    if request is None:
        raise NotFound("sign request not found")
    if principal.kind == "api_client" and request.api_client_id != principal.id:
        raise NotFound("sign request not found")
    require_organisation(session, principal, request.organisation_id, "sign request")
    return request


def _locked(session: Session, principal: Principal, request_id: str) -> SignRequest:
    """The request, row-locked for a state change: two decisions racing (a double tap, approve
    against refuse or cancel) are taken one after the other, the second seeing the first's state."""
    session.execute(select(SignRequest.id).where(SignRequest.id == request_id).with_for_update())
    return get_for(session, principal, request_id)


def may_approve(session: Session, user: User, credential: Credential) -> bool:
    """Personal keys: only their owner. Organisation keys: the organisation's clerks."""
    if not user.active:
        return False
    if credential.kind == CredentialKind.PERSONAL.value:
        return credential.owner_user_id == user.id
    return user.organisation_id == credential.organisation_id and Role.CLERK in user.roles


def _holder(session: Session, principal: Principal, request: SignRequest) -> User:
    if principal.kind != "user":
        raise Forbidden("approvals are made by the key holder")
    user = session.get(User, principal.id)
    assert user is not None
    if not may_approve(session, user, request.credential):
        raise Forbidden("only the credential's holder may decide on this request")
    return user


def _final(session: Session, request: SignRequest, state: RequestState, result: Result,
           reason: str | None = None, detail: str | None = None) -> None:
    request.state, request.result, request.reason, request.detail = state.value, result.value, reason, detail
    request.completed_at = datetime.now(UTC)
    for doc in request.documents:
        if doc.state in (DocState.READY.value, DocState.SIGNING.value):
            doc.state = DocState.CANCELLED.value if result is not Result.FAILED else DocState.FAILED.value
            doc.reason = reason or result.value
    from signer.signing import webhooks

    webhooks.schedule(session, request)


def _require_state(request: SignRequest, *states: RequestState) -> None:
    if request.state not in {s.value for s in states}:
        raise RequestStateConflict(f"the request is {request.state}")


def _device_proof(session: Session, passwords: Passwords, user: User, request: SignRequest,
                  body: ApprovalIn) -> tuple[Device, bytes, passkeys.Assertion | None]:
    """The holder's device and its signature; an app key's PIN is checked here (5 wrong lock it)."""
    device = session.get(Device, body.device_id)
    if device is None or device.user_id != user.id:
        raise NotFound("device not found")
    if device.status != DeviceStatus.ACTIVE.value:
        raise DeviceUnavailable(f"this device is {device.status}")
    if device.kind == DeviceKind.PASSKEY.value:
        if body.passkey is None:
            raise InvalidInput("this device is a passkey: send `passkey`", field="passkey")
        try:
            assertion = passkeys.Assertion.parse(body.passkey)
        except passkeys.PasskeyError as exc:
            raise InvalidInput(str(exc), field="passkey") from None
        if assertion.credential_id != device.credential_id:
            raise InvalidInput("the passkey is not this device's", field="passkey")
        return device, assertion.signature, assertion
    if body.signature is None or body.pin is None:
        raise InvalidInput("this device is an app key: send `signature` and `pin`", field="signature")
    try:
        signature = base64.b64decode(body.signature, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("signature is not base64", field="signature") from None
    if not pins.check(passwords, device, body.pin):
        raise WrongPin(device.id)  # counted by count_wrong_pin, in a transaction that commits
    return device, signature, None


def count_wrong_pin(session: Session, principal: Principal, error: WrongPin) -> WrongPin:
    """Record the failure behind ``error`` (locking the device at the fifth); the error to raise."""
    device = session.get(Device, error.device_id)
    user = session.get(User, device.user_id) if device else None
    failures, locked = pins.record_failure(session, error.device_id, actor=principal.ref,
                                           organisation_id=user.organisation_id if user else None)
    if locked:
        return WrongPin(error.device_id, "wrong PIN; the device is now locked until an admin unlocks it")
    return WrongPin(error.device_id, f"wrong PIN; {pins.MAX_FAILURES - failures} attempt(s) left")


def approve(session: Session, principal: Principal, request_id: str, body: ApprovalIn,
            passwords: Passwords) -> Approval | None:
    """Record the holder's device signature and hand over to the hsm worker, which verifies it.

    A wrong verification code ends the request (WRONG_VC) here, a credential that can no longer
    sign ends it FAILED (CREDENTIAL_UNUSABLE), and a wrong app-key PIN is counted; everything
    cryptographic is checked again by the worker, so this tier cannot make a signature happen on
    its own.
    """
    request = _locked(session, principal, request_id)
    user = _holder(session, principal, request)
    _require_state(request, RequestState.AWAITING_APPROVAL)
    problem = unusable(request.credential)
    if problem is not None:
        # Revoked, suspended or expired since the request was made (and not yet swept): end it
        # here rather than hand the worker a request it must refuse; no PIN is spent on it.
        fail(session, request, Reason.CREDENTIAL_UNUSABLE, problem.detail)
        audit.record(session, actor=principal.ref, action="sign_request.approve", target=f"sign_request:{request.id}",
                     outcome=audit.Outcome.DENIED, organisation_id=request.organisation_id,
                     detail={"reason": Reason.CREDENTIAL_UNUSABLE.value,
                             "credential_status": str(problem.extra.get("credential_status", ""))})
        return None
    device, signature, assertion = _device_proof(session, passwords, user, request, body)
    request.decided_by, request.decided_at = user.id, datetime.now(UTC)
    signature_sha256 = hashlib.sha256(signature).hexdigest()
    if session.scalar(select(Approval.id).where(Approval.signature_sha256 == signature_sha256)):
        # The very same device signature again: a replay. It signs nothing and ends the request.
        fail(session, request, Reason.APPROVAL_REPLAYED, "this device signature was already used")
        audit.record(session, actor=principal.ref, action="sign_request.replay", target=f"sign_request:{request.id}",
                     outcome=audit.Outcome.DENIED, organisation_id=request.organisation_id,
                     detail={"device_id": device.id})
        return None
    approval = Approval(request_id=request.id, device_id=device.id, user_id=user.id,
                        challenge=body.challenge, signature=signature,
                        signature_sha256=signature_sha256,
                        authenticator_data=assertion.authenticator_data if assertion else None,
                        client_data_json=assertion.client_data_json if assertion else None,
                        verification_code=body.verification_code)
    session.add(approval)
    detail = {"device_id": device.id, "approval_id": approval.id}
    if body.verification_code != request.verification_code:
        approval.status, approval.reason = "rejected", Result.WRONG_VC.value
        _final(session, request, RequestState.REJECTED, Result.WRONG_VC)
        audit.record(session, actor=principal.ref, action="sign_request.wrong_vc", target=f"sign_request:{request.id}",
                     outcome=audit.Outcome.DENIED, organisation_id=request.organisation_id, detail=detail)
        return approval
    request.state = RequestState.SIGNING.value
    from signer.signing import dispatch

    hashes = sum(1 for d in request.documents if d.kind == DocKind.HASH.value)
    dispatch.finish_after_commit(session, request.id, files=len(request.documents) - hashes, hashes=hashes)
    audit.record(session, actor=principal.ref, action="sign_request.approve", target=f"sign_request:{request.id}",
                 organisation_id=request.organisation_id, detail=detail)
    return approval


def refuse(session: Session, principal: Principal, request_id: str, reason: str | None) -> SignRequest:
    request = _locked(session, principal, request_id)
    user = _holder(session, principal, request)
    _require_state(request, RequestState.AWAITING_APPROVAL)
    request.decided_by, request.decided_at = user.id, datetime.now(UTC)
    _final(session, request, RequestState.REJECTED, Result.USER_REFUSED, detail=reason)
    audit.record(session, actor=principal.ref, action="sign_request.refuse", target=f"sign_request:{request.id}",
                 organisation_id=request.organisation_id, detail={"reason": reason or ""})
    return request


def cancel(session: Session, principal: Principal, request_id: str) -> SignRequest:
    request = _locked(session, principal, request_id)
    if principal.kind != "api_client":
        raise Forbidden("the document system that asked cancels")
    _require_state(request, RequestState.AWAITING_APPROVAL, RequestState.PREPARING)
    _final(session, request, RequestState.CANCELLED, Result.CANCELLED)
    audit.record(session, actor=principal.ref, action="sign_request.cancel", target=f"sign_request:{request.id}",
                 organisation_id=request.organisation_id)
    return request


def expire_due(session: Session, now: datetime | None = None) -> list[str]:
    """End every request still awaiting approval after its expiry (TIMEOUT)."""
    now = now or datetime.now(UTC)
    due = session.scalars(select(SignRequest).where(
        SignRequest.state == RequestState.AWAITING_APPROVAL.value, SignRequest.expires_at < now)
        .with_for_update(skip_locked=True)).all()
    for request in due:
        _final(session, request, RequestState.EXPIRED, Result.TIMEOUT)
        audit.record(session, actor="system", action="sign_request.expire", target=f"sign_request:{request.id}",
                     organisation_id=request.organisation_id)
    return [r.id for r in due]


def fail(session: Session, request: SignRequest, reason: Reason, detail: str | None = None,
         result: Result = Result.FAILED) -> None:
    """End a request that cannot complete (used by the hsm worker)."""
    state = RequestState.EXPIRED if result is Result.TIMEOUT else RequestState.FAILED
    _final(session, request, state, result, reason.value, detail)
