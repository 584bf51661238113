"""OpenAPI 3.1 description generated from the running application (served by ``docs_page``).

Paths and methods come from ``app.url_map`` (a new endpoint appears by itself), summaries from the
views' docstrings, tags from the blueprints' module docstrings, request bodies from pydantic
models, problem types from the :class:`SignerError` tree. What the code cannot tell (response
shapes, auth, extra parameters, specific errors) is declared in :data:`REGISTRY` by endpoint name;
an endpoint missing from it is still listed, with generic responses and ``x-signer-described: false``.
"""

from __future__ import annotations

import inspect
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import Any, Literal, get_args

from flask import Flask
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import Rule

from signer import errors as err
from signer.api.admin import ApiClientBody, OrganisationBody, UserBody
from signer.api.devices import AppKeyBody, EnrolmentBody, PasskeyBody, RenameBody
from signer.api.exchange import AnswerBody
from signer.api.lifecycle import DecisionBody
from signer.api.openapi_exchange import (
    FollowUpIn,
    FollowUpKind,
    IncomingOut,
    IncomingSummaryOut,
    MonthlyReportOut,
    OutboxRetryOut,
    OutgoingOut,
    UnitOut,
)
from signer.api.session import LoginBody, PasskeyLoginBody
from signer.api.signing import MAX_WAIT_S
from signer.api.verify import VerifyReportOut
from signer.credentials import IMAGE_KINDS
from signer.errors import SignerError
from signer.http.problems import PROBLEM_TYPE
from signer.interchange.models import IncomingState
from signer.interchange.sending import SendBody
from signer.lifecycle.models import Action
from signer.lifecycle.models import RequestStatus as LifecycleStatus
from signer.lifecycle.policy import PolicyBody
from signer.lifecycle.requests import RequestBody
from signer.models import CredentialKind, CredentialStatus, Role
from signer.pki.external import ChainInvalid, InvalidCertificate, KeyMismatch
from signer.signing.errors import (
    CredentialUnusable,
    DeviceUnavailable,
    InvalidDocument,
    RequestStateConflict,
    WrongPin,
)
from signer.signing.models import DocState, RequestState, Result
from signer.signing.schemas import ApprovalIn, Format, Level, Profile, RefusalIn, SignRequestIn

JSON, MULTIPART, PROBLEM_JSON = "application/json", "multipart/form-data", "application/problem+json"
API_KEY, SESSION = "apiKey", "session"
ANY, CLIENTS, PEOPLE, PUBLIC = (API_KEY, SESSION), (API_KEY,), (SESSION,), ()
SECURITY_SCHEMES: dict[str, Any] = {API_KEY: {
    "type": "http", "scheme": "bearer", "description": "a document system's `Authorization: Bearer sk_...`"},
    SESSION: {"type": "apiKey", "in": "cookie", "name": "signer_session",
              "description": "a person's session cookie, set by `POST /v1/session`"}}

# -- the registry --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A request or response body: a pydantic ``model``, an inline JSON ``schema``, or binary."""

    model: type[BaseModel] | None = None
    media: tuple[str, ...] = (JSON,)  # empty: no content (204)
    schema: dict[str, Any] | None = None
    description: str = ""
    headers: tuple[tuple[str, str], ...] = ()  # response headers: (name, description)
    items: bool = False  # a list answer: ``{"items": [model, ...]}``
    required: bool = True  # request bodies only


@dataclass(frozen=True)
class Param:
    """A query, header or path parameter (path parameters are also derived from the rule)."""

    name: str
    where: Literal["query", "header", "path"]
    description: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False

    def as_openapi(self) -> dict[str, Any]:
        return {"name": self.name, "in": self.where, "description": self.description,
                "required": self.required or self.where == "path", "schema": self.schema}


@dataclass(frozen=True)
class Op:
    """What the code cannot tell about an endpoint. 401/403 (auth), 404 (path parameters) and
    413/415/422 (bodies, parameters) are added automatically; ``errors`` lists the others."""

    responses: dict[int, Body]
    request: Body | None = None
    auth: tuple[str, ...] = ANY
    scope: str | None = None  # the API key scope it needs
    params: tuple[Param, ...] = ()
    errors: tuple[type[SignerError], ...] = ()
    summary: str = ""  # used only when the view has no docstring


class Problem(BaseModel):
    """An error (RFC 9457). Clients branch on ``type``; ``title``/``detail`` are for people."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(pattern=f"^{PROBLEM_TYPE}[a-z0-9-]+$", examples=[f"{PROBLEM_TYPE}invalid-input"])
    title: str
    status: int = Field(ge=400, le=599)
    detail: str
    instance: str | None = Field(default=None, description="the request path")
    field: str | None = Field(default=None, description="the offending parameter, when one is")
    errors: list[dict[str, str]] | None = Field(
        default=None, description="per-field validation errors: `{field, message}` (dotted paths)")


class SignedDocumentOut(BaseModel):
    """One document of a sign request and its own state."""

    id: str
    name: str
    format: Format
    profile: Profile | None
    level: Level
    state: DocState
    reason: str | None = Field(description="why it was not signed (a result or reason code)")
    dtbsr: str = Field(description="hex digest the HSM signs and the holder approves")
    page_count: int | None
    signed_url: str | None = Field(description="download link once COMPLETED")
    signature: str | None = Field(description="raw documents: the signature once COMPLETED, base64 "
                                              "(PKCS#1 v1.5 for RSA keys, DER ECDSA for EC keys)")


class SignRequestOut(BaseModel):
    """A sign request; show `verification_code` to the holder, who picks it on the phone."""

    id: str
    state: RequestState
    result: Result | None
    reason: str | None
    detail: str | None
    credential_id: str
    verification_code: str | None = Field(pattern=r"^\d{4}$", description="for document systems only")
    code_choices: list[str] | None = Field(description="for the holder, while awaiting approval: three codes, "
                                                       "one of them the document system's")
    challenge: str = Field(description="hex SHA-256 the holder's device signs")
    expires_at: datetime
    created_at: datetime
    completed_at: datetime | None
    documents: list[SignedDocumentOut]


def _out(model_name: str, doc: str, /, **fields: Any) -> type[BaseModel]:
    """A response model in one call (the ``views`` shapes the code builds as plain dicts)."""
    return create_model(model_name, __doc__=doc, **fields)


OrganisationOut = _out("OrganisationOut", "An organisation (cơ quan, tổ chức).", id=str, code=str,
                       name=str, parent_id=str | None, created_at=datetime)
UserOut = _out("UserOut", "A person.", id=str, username=str, full_name=str, email=str | None,
               organisation_id=str, roles=list[Role], active=bool, created_at=datetime)
ApiClientOut = _out("ApiClientOut", "A document system's API client.", id=str, name=str,
                    organisation_id=str, key_id=str, scopes=list[str], active=bool, created_at=datetime,
                    last_used_at=datetime | None)
NewApiClientOut = _out("NewApiClientOut", "A new client: `api_key` and `webhook_secret` are shown once.",
                       __base__=ApiClientOut, api_key=str, webhook_secret=str | None)
CredentialOut = _out("CredentialOut", "A signing credential (HSM key and certificate).", id=str,
                     name=str, kind=CredentialKind, organisation_id=str, owner_user_id=str | None,
                     key_spec=str, status=CredentialStatus, has_certificate=bool, created_at=datetime)
ImageOut = _out("ImageOut", "A stored signature or seal image.", kind=str, sha256=str, width_mm=int | None)
MeOut = _out("MeOut", "The caller.", kind=Literal["user", "api_client"], id=str,
             organisation_id=str | None, roles=list[Role], scopes=list[str], name=str)
AuditEventOut = _out("AuditEventOut", "One hash-chained audit record.", seq=int, at=str, actor=str,
                     action=str, target=str, outcome=str, organisation_id=str | None, detail=str,
                     hash=str, prev_hash=str)
AuditPageOut = _out("AuditPageOut", "Audit records after `after`.", next_after=int,
                    items=list[AuditEventOut])  # type: ignore[valid-type]
AuditCheckOut = _out("AuditCheckOut", "The result of checking the audit chain.", ok=bool, checked=int,
                     broken_seq=int | None, reason=str, summary=str)
ReadyOut = _out("ReadyOut", "Readiness and each check: `{ok, ...}`.", status=Literal["ready", "not-ready"],
               checks=dict[str, dict[str, Any]])
CertificateOut = _out("CertificateOut", "A certificate the service issued or tracks.", id=str,
                      credential_id=str | None, credential_status=str | None, organisation_id=str | None,
                      source=Literal["builtin", "external", "inventory"], holder=str | None,
                      notified_days=int | None, serial=str, subject=str, fingerprint_sha256=str,
                      not_before=datetime, not_after=datetime, status=Literal["good", "revoked", "expired"],
                      revoked_at=datetime | None, revocation_reason=str | None)
ImportRowOut = _out("ImportRowOut", "One certificate of an inventory import: a CSV row (`row` 1 = first data row) "
                    "or the n-th certificate of an uploaded file (`file`, `row`).",
                    row=int, file=str | None, status=Literal["imported", "duplicate", "error"], error=str | None,
                    certificate_id=str | None, fingerprint=str | None, subject=str | None, not_after=str | None)
ImportReportOut = _out("ImportReportOut", "Per-row results of an inventory import; bad rows do not stop good ones.",
                       organisation_id=str, total=int, imported=int, duplicates=int, errors=int,
                       rows=list[ImportRowOut])  # type: ignore[valid-type]
ImportedCertificateOut = _out(
    "ImportedCertificateOut", "The Government CA's certificate, now the credential's (registry source `external`).",
    id=str, credential_id=str, organisation_id=str | None, source=Literal["external"], serial=str, subject=str,
    fingerprint_sha256=str, not_before=datetime, not_after=datetime, status=Literal["good", "revoked", "expired"],
    request_status=str)
_CA_SUMMARY = {"type": "object", "required": ["version", "request", "organisation", "subject", "key", "csr_pem",
                                              "requester", "approvals"], "description": (
    "The form data for the Government CA: request (id, position, action), organisation (QCVN 102 code, name), "
    "subject fields from the CSR (attribute, Vietnamese/English label, value), certificate and subject profiles, "
    "key (spec, SPKI SHA-256), CSR PEM and SHA-256, requester, approvers with their decision times")}
_CA_ERRORS = (RequestStateConflict, err.Conflict)
DeviceOut = _out("DeviceOut", "An approval device: a passkey or an app key.", id=str, user_id=str,
                 kind=Literal["webauthn", "app_key"], name=str,
                 status=Literal["pending", "active", "disabled", "locked"], sign_count=int, failed_pins=int,
                 approved_by=str | None, approved_at=datetime | None, last_used_at=datetime | None,
                 created_at=datetime)
EnrolmentOut = _out("EnrolmentOut", "A one-time enrolment link; `token` is shown once.", id=str, user_id=str,
                    kind=Literal["webauthn", "app_key"] | None, expires_at=datetime, token=str, url=str,
                    qr_svg=str)
EnrolmentInfoOut = _out("EnrolmentInfoOut", "Who an enrolment link is for.", user=str, username=str,
                        kind=Literal["webauthn", "app_key"] | None, expires_at=datetime)
CertificateRequestItemOut = _out("CertificateRequestItemOut", "One credential a request acts on, and its outcome.",
                                 position=int, credential_id=str | None, certificate_id=str | None,
                                 status=Literal["pending", "done", "failed", "awaiting"], error=str | None,
                                 has_csr=bool)
DecisionOut = _out("DecisionOut", "One approver's decision.", user_id=str, decision=Literal["approve", "reject"],
                   comment=str | None, at=datetime)
CertificateRequestOut = _out(
    "CertificateRequestOut", "A certificate lifecycle request (issue, renew, rekey, revoke, suspend, resume).",
    id=str, action=Action, status=LifecycleStatus, organisation_id=str, profile=str | None,
    subject_profile=str | None, ca=Literal["builtin", "external"], params=dict[str, Any], requested_by=str,
    approvals=int, approvals_required=int, approver_roles=list[Role], expires_at=datetime, created_at=datetime,
    decided_at=datetime | None, completed_at=datetime | None,
    decisions=list[DecisionOut], items=list[CertificateRequestItemOut])  # type: ignore[valid-type]
PolicyOut = _out("PolicyOut", "An approval policy in force.", action=Action, profile=str, approvals_required=int,
                 roles=list[Role], ttl_hours=int, builtin=bool)
ProfileOut = _out("ProfileOut", "A certificate or subject profile (its JSON document, plus `kind`).",
                  kind=Literal["certificate", "subject"], name=str, title=str)
_DEVICE = Body(DeviceOut)
_LIFECYCLE = Body(CertificateRequestOut)
_PEM = Param("format", "query", "`pem` for PEM instead of DER", {"enum": ["pem"]})
_INT = {"type": "integer", "minimum": 0}
_REQUEST = Body(SignRequestOut, description="the request")
_OUTGOING, _INCOMING = Body(OutgoingOut), Body(IncomingOut)
_EXCHANGE = "exchange"  # the API key scope
_PACKET_ERRORS = (err.Conflict, err.InvalidPacket)  # state conflicts; a packet our edXML rules refuse

REGISTRY: dict[str, Op] = {
    "health.healthz": Op({200: Body(schema={"type": "object", "properties": {"status": {"const": "ok"}}})},
                         auth=PUBLIC, summary="Liveness: the process answers"),
    "health.readyz": Op({200: Body(ReadyOut), 503: Body(ReadyOut, description="not ready")},
                        auth=PUBLIC, summary="Readiness: database, Redis and a live hsm worker"),
    "session.login": Op({200: Body(UserOut, headers=(("Set-Cookie", "the `signer_session` cookie"),))},
                        request=Body(LoginBody), auth=PUBLIC, summary="Sign in with username and password"),
    "session.passkey_options": Op({200: Body(schema={"type": "object", "required": ["challenge", "login_id"],
                                                     "description": (
        "PublicKeyCredentialRequestOptions as JSON (binary fields base64url) plus `login_id`, "
        "sent back with the assertion")})}, auth=PUBLIC, errors=(err.ServiceUnavailable,)),
    "session.passkey_login": Op({200: Body(UserOut, headers=(("Set-Cookie", "the `signer_session` cookie"),))},
                                request=Body(PasskeyLoginBody), auth=PUBLIC,
                                errors=(err.Unauthenticated, err.ServiceUnavailable)),
    "session.logout": Op({204: Body(media=(), description="signed out")}, auth=PEOPLE, summary="Sign out"),
    "session.me": Op({200: Body(MeOut)}, summary="Who is calling"),
    "admin.list_organisations": Op({200: Body(OrganisationOut, items=True)}, auth=PEOPLE),
    "admin.create_organisation": Op({201: Body(OrganisationOut)}, request=Body(OrganisationBody),
                                    auth=PEOPLE, errors=(err.Conflict,)),
    "admin.get_organisation": Op({200: Body(OrganisationOut)}, auth=PEOPLE),
    "admin.list_users": Op({200: Body(UserOut, items=True)}, auth=PEOPLE,
                           params=(Param("organisation_id", "query", "only this organisation"),)),
    "admin.create_user": Op({201: Body(UserOut)}, request=Body(UserBody), auth=PEOPLE,
                            errors=(err.Conflict,)),
    "admin.get_user": Op({200: Body(UserOut)}, auth=PEOPLE),
    "admin.list_api_clients": Op({200: Body(ApiClientOut, items=True)}, auth=PEOPLE),
    "admin.create_api_client": Op({201: Body(NewApiClientOut)}, request=Body(ApiClientBody),
                                  auth=PEOPLE, errors=(err.Conflict,)),
    "devices.create_enrolment": Op({201: Body(EnrolmentOut)}, request=Body(EnrolmentBody), auth=PEOPLE),
    "devices.enrolment_info": Op({200: Body(EnrolmentInfoOut)}, auth=PUBLIC),
    "devices.register_app_key": Op({201: _DEVICE}, request=Body(AppKeyBody), auth=PUBLIC),
    "devices.passkey_options": Op({200: Body(schema={"type": "object", "description": (
        "PublicKeyCredentialCreationOptions as JSON (binary fields base64url)")})}, auth=PUBLIC),
    "devices.register_passkey": Op({201: _DEVICE}, request=Body(PasskeyBody), auth=PUBLIC,
                                   errors=(err.Conflict,)),
    "devices.list_devices": Op({200: Body(DeviceOut, items=True)}, auth=PEOPLE, params=(
        Param("user_id", "query", "one person's devices"),
        Param("status", "query", "only this status", {"enum": ["pending", "active", "disabled", "locked"]}))),
    "devices.approve_device": Op({200: _DEVICE}, auth=PEOPLE, errors=(err.Conflict,)),
    "devices.rename_device": Op({200: _DEVICE}, request=Body(RenameBody), auth=PEOPLE),
    "devices.disable_device": Op({200: _DEVICE}, auth=PEOPLE),
    "devices.enable_device": Op({200: _DEVICE}, auth=PEOPLE, errors=(err.Conflict,)),
    "devices.remove_device": Op({204: Body(media=(), description="removed (or kept disabled)")}, auth=PEOPLE),
    "signing.my_approvals": Op({200: Body(SignRequestOut, items=True)}, auth=PEOPLE,
                               summary="Requests waiting for my decision, newest first"),
    "signing.my_decisions": Op({200: Body(SignRequestOut, items=True)}, auth=PEOPLE, params=(
        Param("limit", "query", "how many", _INT | {"maximum": 50, "default": 50}),),
        summary="My last decisions (approved, refused, wrong code)"),
    "certificates.list_certificates": Op({200: Body(CertificateOut, items=True)}, auth=PEOPLE, params=(
        Param("expiring_within", "query", "only unexpired certificates ending within N days, e.g. 30d",
              {"type": "string", "pattern": "^[0-9]{1,4}d$"}),
        Param("status", "query", "good, revoked or expired", {"enum": ["good", "revoked", "expired"]}))),
    "certificate_files.import_certificates": Op(
        {200: Body(ImportReportOut)}, request=Body(media=(MULTIPART, "text/csv"), description=(
            "multipart/form-data with `file` parts (PEM, DER or PKCS#7; a PEM file may hold several certificates) "
            "and/or a `csv` part or field (UTF-8, `,` or `;`; columns `pem` (required), `holder`, "
            "`organisation_code` (QCVN 102, default: the organisation given), `note`) and an optional "
            "`organisation_id` field; or the CSV itself as text/csv")), auth=PEOPLE,
        params=(Param("organisation_id", "query", "whose certificates these are (default: the caller's "
                      "organisation)"),),
        summary="Import existing certificates (keys on USB tokens or SIM cards) for expiry tracking"),
    "certificate_files.request_csr": Op(
        {200: Body(media=("application/x-pem-file", "application/pkcs10"),
                   headers=(("Content-Disposition", "attachment; filename=<request>-<position>.csr"),))},
        auth=PEOPLE, errors=_CA_ERRORS,
        params=(Param("format", "query", "`der` for DER instead of PEM", {"enum": ["pem", "der"]}),)),
    "certificate_files.request_summary": Op({200: Body(schema=_CA_SUMMARY)}, auth=PEOPLE, errors=_CA_ERRORS),
    "certificate_files.request_summary_pdf": Op(
        {200: Body(media=("application/pdf",), description="one A4 page, Vietnamese first",
                   headers=(("Content-Disposition", "attachment; filename=<request>-<position>-summary.pdf"),))},
        auth=PEOPLE, errors=_CA_ERRORS),
    "certificate_files.import_certificate": Op(
        {201: Body(ImportedCertificateOut)},
        request=Body(media=("application/x-pem-file", "application/pkix-cert", "application/pkcs7-mime", MULTIPART),
                     description="the certificate and its chain: a PEM bundle, a DER certificate, or PKCS#7 "
                                 "(DER or PEM); or multipart/form-data with a `file` part"),
        auth=PEOPLE, errors=(KeyMismatch, ChainInvalid, InvalidCertificate, *_CA_ERRORS)),
    "credentials.list_credentials": Op({200: Body(CredentialOut, items=True)}, scope="read"),
    "credentials.get_credential": Op({200: Body(CredentialOut)}, scope="read"),
    "credentials.put_image": Op(
        {200: Body(ImageOut)}, request=Body(media=("image/png",), description="PNG with transparency"),
        auth=PEOPLE, params=(
            Param("kind", "path", "signature (personal) or seal (organisation)", {"enum": list(IMAGE_KINDS)}),
            Param("width_mm", "query", "printed width", {"type": "integer", "minimum": 5, "maximum": 100}))),
    "audit.list_events": Op({200: Body(AuditPageOut)}, auth=PEOPLE, params=(
        Param("after", "query", "sequence number to continue after", _INT),
        Param("limit", "query", "page size", _INT | {"maximum": 1000, "default": 100}))),
    "audit.verify_chain": Op({200: Body(AuditCheckOut)}, auth=PEOPLE),
    "verify.verify": Op({200: Body(VerifyReportOut)}, request=Body(media=(MULTIPART, "application/pdf"), description=(
        "multipart/form-data with `file` (a PDF, or any file) and optionally `signature` (a detached CMS, "
        "DER or PEM); or the PDF itself as application/pdf")), auth=ANY, scope="verify",
        errors=(InvalidDocument,), summary="Verify the signatures of a PDF, or of a file and its detached CMS"),
    "signing.create": Op(
        {202: Body(SignRequestOut, description="created; it awaits the holder's approval",
                   headers=(("Location", "the request's URL"),)),
         200: Body(SignRequestOut, description="replay: same Idempotency-Key and same body")},
        request=Body(SignRequestIn, media=(JSON, MULTIPART), description=(
            "JSON with base64 `content`, or multipart/form-data: this JSON in a part named `request` "
            "and each file in the part its document's `file` names.")),
        auth=CLIENTS, scope="sign",
        errors=(err.NotFound, err.Conflict, InvalidDocument, CredentialUnusable),
        params=(Param("Idempotency-Key", "header", "same key + same body answers the same request; same "
                      "key + another body is 409", {"type": "string", "minLength": 1, "maxLength": 255}),),
        summary="Ask for signatures on one document or a batch"),
    "signing.get": Op({200: _REQUEST}, summary="A sign request and its documents", params=(Param(
        "wait", "query", f"long-poll: answer when the state changes, after N seconds at most ({MAX_WAIT_S} "
        "or less)", _INT | {"default": 0}),)),
    "signing.cancel": Op({200: _REQUEST}, auth=CLIENTS, errors=(RequestStateConflict,),
                         summary="Cancel a request that is not signed yet"),
    "signing.approve": Op({202: _REQUEST}, request=Body(ApprovalIn), auth=PEOPLE,
                          errors=(RequestStateConflict, DeviceUnavailable, WrongPin, err.Conflict),
                          summary="Approve as the key holder (device signature over the challenge)"),
    "signing.refuse": Op({200: _REQUEST}, request=Body(RefusalIn, required=False), auth=PEOPLE,
                         errors=(RequestStateConflict,), summary="Refuse as the key holder"),
    "signing.download": Op({200: Body(
        media=("application/pdf", "application/pkcs7-signature", "application/octet-stream"),
        description="PDF (pades), detached CMS (cades) or raw signature (raw)",
        headers=(("Content-Disposition", "attachment; filename=..."), ("Repr-Digest", "body SHA-256")))},
        summary="Download a signed document"),
    "pki.ca_certificate": Op({200: Body(media=("application/pkix-cert", "application/x-pem-file"))},
                             auth=PUBLIC, params=(_PEM,), summary="A CA certificate of the built-in PKI"),
    "pki.crl": Op({200: Body(media=("application/pkix-crl", "application/x-pem-file"))}, auth=PUBLIC,
                  params=(_PEM,), summary="The latest CRL of a built-in CA"),
    "pki.ocsp_post": Op({200: Body(media=("application/ocsp-response",), description=(
        "an OCSP response (RFC 6960): successful (good, revoked or unknown) or an unsigned error "
        "(malformedRequest, unauthorized, tryLater)"))},
        request=Body(media=("application/ocsp-request",)), auth=PUBLIC,
        summary="OCSP responder of the built-in CA (POST)"),
    "pki.ocsp_get": Op({200: Body(media=("application/ocsp-response",), description=(
        "an OCSP response (RFC 6960); pre-signed responses are cacheable up to their nextUpdate"),
        headers=(("Cache-Control", "max-age bounded by the response's nextUpdate"),
                 ("ETag", "of the response bytes")))},
        auth=PUBLIC, summary="OCSP responder of the built-in CA (GET, RFC 6960 A.1.1)"),
    "lifecycle.submit": Op({201: _LIFECYCLE}, request=Body(RequestBody), auth=PEOPLE, errors=(err.Conflict,)),
    "lifecycle.list_requests": Op({200: Body(CertificateRequestOut, items=True)}, auth=PEOPLE, params=(
        Param("status", "query", "only this status", {"enum": [s.value for s in LifecycleStatus]}),)),
    "lifecycle.get_request": Op({200: _LIFECYCLE}, auth=PEOPLE),
    "lifecycle.approve": Op({200: _LIFECYCLE}, request=Body(DecisionBody, required=False), auth=PEOPLE,
                            errors=(err.Conflict,)),
    "lifecycle.reject": Op({200: _LIFECYCLE}, request=Body(DecisionBody, required=False), auth=PEOPLE,
                           errors=(err.Conflict,)),
    "lifecycle.cancel": Op({200: _LIFECYCLE}, auth=PEOPLE, errors=(err.Conflict,)),
    "lifecycle.list_policies": Op({200: Body(PolicyOut, items=True)}, auth=PEOPLE),
    "lifecycle.put_policy": Op({200: Body(PolicyOut)}, request=Body(PolicyBody), auth=PEOPLE, params=(
        Param("action", "path", "the action", {"enum": [a.value for a in Action]}),
        Param("profile", "path", "a certificate profile name, or `*` for every profile"))),
    "lifecycle.list_profiles": Op({200: Body(ProfileOut, items=True)}, auth=PEOPLE),
    "lifecycle.put_profile": Op({200: Body(ProfileOut)}, request=Body(schema={"type": "object", "description": (
        "a certificate profile (credential_kind, key_specs, key_usage, extended_key_usage, validity_days, "
        "policy_oids, renew_same_key) or a subject profile (fields: attribute, key, label, required, prefix, "
        "pattern, default_from)")}), auth=PEOPLE, params=(
        Param("kind", "path", "certificate or subject", {"enum": ["certificate", "subject"]}),)),
    "exchange.send": Op(
        {201: Body(OutgoingOut, description="accepted: one packet per recipient, delivered in the background")},
        request=Body(SendBody), scope=_EXCHANGE,
        errors=(err.NotFound, *_PACKET_ERRORS, err.SecretDocument, err.AxisRefused, err.ServiceUnavailable)),
    "exchange.list_outgoing": Op({200: Body(OutgoingOut, items=True)}, scope=_EXCHANGE),
    "exchange.get_outgoing": Op({200: _OUTGOING}, scope=_EXCHANGE),
    "exchange.follow_up": Op(
        {201: Body(OutgoingOut, description="revoke, update, replace: the new follow-up document"),
         202: Body(OutgoingOut, description="take-back: the original document; the requests (13) are in "
                                            "`status_requests`")},
        request=Body(FollowUpIn, description="FollowUpBody for revoke, update and replace; TakeBackBody for "
                                             "take-back"),
        scope=_EXCHANGE, errors=_PACKET_ERRORS, params=(
            Param("kind", "path", "revoke, update, replace, or take-back (ask for it back: status 13)",
                  {"enum": list(get_args(FollowUpKind))}),)),
    "exchange.retry": Op({200: Body(OutboxRetryOut)}, scope=_EXCHANGE, errors=(err.Conflict,)),
    "exchange.list_incoming": Op({200: Body(IncomingSummaryOut, items=True)}, scope=_EXCHANGE, params=(
        Param("state", "query", "only this state", {"enum": [s.value for s in IncomingState]}),)),
    "exchange.get_incoming": Op({200: _INCOMING}, scope=_EXCHANGE),
    "exchange.download": Op(
        {200: Body(media=("application/pdf", "application/octet-stream"),
                   description="the file as it arrived, with its own content type (usually a signed PDF)",
                   headers=(("Content-Disposition", "attachment; filename*=UTF-8''<name>"),))},
        scope=_EXCHANGE,
        params=(Param("position", "path", "the file's `position` in `files`", _INT),)),
    "exchange.answer": Op({200: _INCOMING}, request=Body(AnswerBody), scope=_EXCHANGE, errors=_PACKET_ERRORS),
    "exchange.monthly": Op({200: Body(MonthlyReportOut)}, auth=PEOPLE, params=(
        Param("month", "query", "the month (UTC+07:00)", {"type": "string", "pattern": r"^\d{4}-\d{2}$"},
              required=True),
        Param("organisation_id", "query", "the organisation (default: the caller's)"))),
    "exchange.units": Op({200: Body(UnitOut, items=True)}, scope=_EXCHANGE),
    "pki.timestamp": Op({200: Body(media=("application/timestamp-reply",))},
                        request=Body(media=("application/timestamp-query",)), auth=PUBLIC,
                        errors=(err.ServiceUnavailable,), summary="RFC 3161 time-stamp authority"),
}

# -- the generator -------------------------------------------------------------------------------

TITLE, PACKAGE = "Vietnamese government remote signing service", "vn-remote-signer"
DOCS_BLUEPRINT = "openapi"  # /openapi.json and /docs themselves (signer.api.docs_page)
# The phone pages (signer.web.phone) are HTML for people, not API.
EXCLUDED_ENDPOINTS, EXCLUDED_BLUEPRINTS = frozenset({"static"}), frozenset({DOCS_BLUEPRINT, "phone"})
_RULE_ARG = re.compile(r"<(?:(?P<conv>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_CONVERTERS = {"int": {"type": "integer"}, "float": {"type": "number"},
               "uuid": {"type": "string", "format": "uuid"}}
_Refs = dict[tuple[Any, JsonSchemaMode], dict[str, Any]]


def described_rules(app: Flask) -> list[Rule]:
    """The URL rules the description covers: all but ``static`` and the docs' own."""
    return [r for r in app.url_map.iter_rules() if r.endpoint not in EXCLUDED_ENDPOINTS
            and r.endpoint.partition(".")[0] not in EXCLUDED_BLUEPRINTS]


def openapi_path(rule: Rule) -> str:
    """``/v1/x/<int:id>`` -> ``/v1/x/{id}``."""
    return _RULE_ARG.sub(lambda m: "{" + m["name"] + "}", rule.rule)


def problem_classes() -> list[type[SignerError]]:
    """Every problem type the code can raise (the :class:`SignerError` tree), by status."""
    tree, found = [SignerError], dict[str, type[SignerError]]()
    for cls in tree:  # grows while it is walked
        found.setdefault(cls.slug, cls)
        tree.extend(cls.__subclasses__())
    return sorted(found.values(), key=lambda c: (c.status, c.slug))


def build_spec(app: Flask) -> dict[str, Any]:
    """Generate the OpenAPI 3.1 document of ``app``."""
    rules = sorted(described_rules(app), key=lambda r: (r.rule, r.endpoint))
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Problem, "serialization"): None}
    for op in filter(None, (REGISTRY.get(r.endpoint) for r in rules)):
        if op.request is not None and op.request.model is not None:
            wanted[(op.request.model, "validation")] = None
        wanted.update({(b.model, "serialization"): None for b in op.responses.values() if b.model})
    # One generation for every model: shared $defs agree and names are unique.
    refs, defs = models_json_schema(list(wanted), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, Any]] = {}
    for rule in rules:
        tag = rule.endpoint.partition(".")[0] if "." in rule.endpoint else "default"
        tags.setdefault(tag, _tag(app, tag))
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            operation = _operation(app, rule, tag, REGISTRY.get(rule.endpoint), dict(refs))
            if len(methods) > 1:
                operation["operationId"] += "_" + method.lower()
            paths.setdefault(openapi_path(rule), {})[method.lower()] = operation
    return {
        "openapi": "3.1.0", "servers": [{"url": "/"}],
        "info": {"title": TITLE, "version": _version(), "description": _info_description()},
        "tags": [tags[name] for name in sorted(tags)], "paths": paths,
        "components": {"schemas": dict(sorted(defs.get("$defs", {}).items())),
                       "securitySchemes": SECURITY_SCHEMES},
    }


def _version() -> str:
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def _docstring(obj: object) -> tuple[str, str]:
    """(summary, description): a docstring's first sentence, then the rest."""
    first, _, rest = (inspect.getdoc(obj) or "").partition("\n\n")
    summary, dot, more = " ".join(first.split()).partition(". ")
    return summary + dot.strip(), "\n\n".join(part for part in (more, rest.strip()) if part)


def _tag(app: Flask, name: str) -> dict[str, Any]:
    blueprint = app.blueprints.get(name)
    summary = _docstring(sys.modules.get(blueprint.import_name))[0] if blueprint else ""
    return {"name": name, "description": summary} if summary else {"name": name}


def _info_description() -> str:
    lines = ["Document systems create sign requests with an API key; the key holder approves; the "
             "HSM worker signs. People use the session cookie from `POST /v1/session`.", "",
             f"Errors are `{PROBLEM_JSON}` (RFC 9457) with `type` = `{PROBLEM_TYPE}<slug>`: branch "
             "on `type`, never on the text. Types:", ""]
    lines += [f"- `{PROBLEM_TYPE}{c.slug}` ({c.status}): {c.title} / {c.title_vi}" for c in problem_classes()]
    return "\n".join(lines)


def _content(body: Body, refs: _Refs, mode: JsonSchemaMode) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "format": "binary"} if body.schema is None else body.schema
    if body.model is not None:
        schema = dict(refs[(body.model, mode)])
    if body.items:
        schema = {"type": "object", "required": ["items"],
                  "properties": {"items": {"type": "array", "items": schema}}}
    content: dict[str, Any] = {media: {"schema": schema} for media in body.media}
    if MULTIPART in content and body.model:  # the JSON body in the part `request`, files in others
        content[MULTIPART] = {"schema": {
            "type": "object", "required": ["request"], "properties": {"request": schema},
            "additionalProperties": {"type": "string", "format": "binary", "description": "a file"}},
            "encoding": {"request": {"contentType": JSON}}}
    return content


def _response(status: int, body: Body, refs: _Refs) -> dict[str, Any]:
    out: dict[str, Any] = {"description": body.description or HTTP_STATUS_CODES.get(status, "Success")}
    if body.media:
        out["content"] = _content(body, refs, "serialization")
    if body.headers:
        out["headers"] = {n: {"description": text, "schema": {"type": "string"}} for n, text in body.headers}
    return out


def _problems(classes: list[type[SignerError]]) -> dict[str, Any]:
    """A problem+json response; one example per problem type it may carry."""
    examples = {c.slug: {"summary": c.title, "value": {"type": PROBLEM_TYPE + c.slug, "title": c.title,
                                                       "status": c.status, "detail": c.title}}
                for c in classes}
    return {"description": "; ".join(f"{c.title} (`{c.slug}`)" for c in classes), "content": {
        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}, "examples": examples}}}


def _operation(app: Flask, rule: Rule, tag: str, op: Op | None, refs: _Refs) -> dict[str, Any]:
    spec = op or Op({200: Body(schema={}, description="Success (not described yet)")})
    summary, description = _docstring(app.view_functions.get(rule.endpoint))
    summary = summary or spec.summary or rule.endpoint.rpartition(".")[2].replace("_", " ").capitalize()
    notes = [description] if description else []
    notes += [f"API keys need the `{spec.scope}` scope."] if spec.scope else []
    notes += ["Not in the `signer.api.openapi` REGISTRY yet: generic responses."] if op is None else []
    overridden = {p.name for p in spec.params if p.where == "path"}
    params = [{"name": m["name"], "in": "path", "required": True,
               "schema": _CONVERTERS.get(m["conv"] or "", {"type": "string"})}
              for m in _RULE_ARG.finditer(rule.rule) if m["name"] not in overridden]
    params += [p.as_openapi() for p in spec.params]
    errors = list(spec.errors) + ([err.Unauthenticated, err.Forbidden] if spec.auth else [])
    errors += [err.NotFound] if any(p["in"] == "path" for p in params) else []
    errors += [err.PayloadTooLarge, err.UnsupportedMediaType, err.InvalidInput] if spec.request else []
    errors += [err.InvalidInput] if any(p["in"] != "path" for p in params) else []
    by_status: dict[int, list[type[SignerError]]] = {}
    for cls in dict.fromkeys(errors):
        by_status.setdefault(cls.status, []).append(cls)
    responses = {str(s): _response(s, b, refs) for s, b in sorted(spec.responses.items())}
    for status, classes in sorted(by_status.items()):
        responses.setdefault(str(status), _problems(classes))
    responses["default"] = _problems([SignerError, err.ServiceUnavailable])
    operation: dict[str, Any] = {"tags": [tag], "summary": summary,
                                 "operationId": rule.endpoint.replace(".", "_"),
                                 "security": [{scheme: []} for scheme in spec.auth]}
    if notes:
        operation["description"] = "\n\n".join(notes)
    if params:
        operation["parameters"] = params
    if spec.request is not None:
        body = spec.request
        operation["requestBody"] = {"description": body.description, "required": body.required,
                                    "content": _content(body, refs, "validation")}
    operation["responses"] = responses
    if op is None:
        operation["x-signer-described"] = False
    return operation
