"""Signing credentials: an HSM key (and later its certificate chain) owned by a person or an
organisation. The lifecycle (requests, approvals, CA) arrives with the certificate issue."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

import hsm
from signer import audit
from signer.authz import MANAGERS, require_organisation, require_roles, require_scope, visible_organisations
from signer.blobs import BlobStore
from signer.db import after_commit
from signer.errors import InvalidInput, NotFound
from signer.models import Credential, CredentialKind, Role, User, utcnow
from signer.principal import Principal
from signer.signing.models import CredentialImage


def key_fingerprint(public_key_der: bytes) -> str:
    """SHA-256 of the SubjectPublicKeyInfo, as the audit log names keys."""
    return hashlib.sha256(public_key_der).hexdigest()


def register_key(session: Session, actor: Principal, *, name: str, kind: CredentialKind,
                 organisation_id: str, owner_user_id: str | None, key: hsm.KeyInfo,
                 key_spec: str) -> Credential:
    """Record a key generated in the HSM as a (not yet certified) credential."""
    require_roles(actor, MANAGERS, "registering a credential")
    require_organisation(session, actor, organisation_id, "organisation")
    if kind is CredentialKind.PERSONAL:
        owner = session.get(User, owner_user_id) if owner_user_id else None
        if owner is None or owner.organisation_id != organisation_id:
            raise InvalidInput("a personal credential needs an owner in the same organisation")
        if Role.LEADER not in owner.roles:
            raise InvalidInput("personal credentials belong to leaders")
    elif owner_user_id is not None:
        raise InvalidInput("an organisation credential has no personal owner")
    cred = Credential(name=name, kind=kind.value, organisation_id=organisation_id,
                      owner_user_id=owner_user_id, hsm_key_label=key.label, hsm_key_id=key.key_id,
                      key_spec=key_spec, public_key_der=key.public_key_der)
    session.add(cred)
    session.flush()
    audit.record(session, actor=actor.ref, action="credential.register", target=f"credential:{cred.id}",
                 organisation_id=organisation_id,
                 detail={"kind": kind.value, "key_label": key.label, "key_spec": key_spec,
                         "key_sha256": key_fingerprint(key.public_key_der),
                         "owner_user_id": owner_user_id})
    return cred


def list_credentials(session: Session, actor: Principal) -> list[Credential]:
    require_scope(actor, "read")
    query = select(Credential).order_by(Credential.created_at)
    visible = visible_organisations(session, actor)
    if visible is not None:
        query = query.where(Credential.organisation_id.in_(visible))
    return list(session.scalars(query))


def get_credential(session: Session, actor: Principal, credential_id: str) -> Credential:
    require_scope(actor, "read")
    cred = session.get(Credential, credential_id)
    if cred is None:
        raise NotFound("credential not found")
    require_organisation(session, actor, cred.organisation_id, "credential")
    return cred


IMAGE_KINDS = ("signature", "seal")


def set_image(session: Session, blobs: BlobStore, actor: Principal, credential_id: str, kind: str,
              png: bytes, width_mm: int | None = None) -> CredentialImage:
    """Upload the leader's signature image (personal) or the seal image (organisation)."""
    from signer.signing.appearance import AppearanceError, validate_png

    if kind not in IMAGE_KINDS:
        raise NotFound("no such image kind")
    cred = session.get(Credential, credential_id)
    if cred is None:
        raise NotFound("credential not found")
    require_organisation(session, actor, cred.organisation_id, "credential")
    own_signature = (actor.kind == "user" and cred.owner_user_id == actor.id and kind == "signature")
    if not own_signature:
        require_roles(actor, frozenset({Role.ADMIN, Role.RA_OFFICER}), "uploading credential images")
    expected = "signature" if cred.kind == CredentialKind.PERSONAL.value else "seal"
    if kind != expected:
        raise InvalidInput(f"a {cred.kind} credential takes a {expected} image")
    try:
        validate_png(png, what=kind)
    except AppearanceError as exc:
        raise InvalidInput(str(exc)) from None
    digest = hashlib.sha256(png).hexdigest()
    image = session.get(CredentialImage, (cred.id, kind))
    old_blob = image.blob if image else None
    blob = blobs.put(png, prefix="image")
    if image is None:
        image = CredentialImage(credential_id=cred.id, kind=kind, blob=blob, sha256=digest, width_mm=width_mm)
        session.add(image)
    else:
        image.blob, image.sha256, image.width_mm, image.uploaded_at = blob, digest, width_mm, utcnow()
    session.flush()
    if old_blob:
        after_commit(session, lambda: blobs.delete(old_blob))
    audit.record(session, actor=actor.ref, action="credential.image", target=f"credential:{cred.id}",
                 organisation_id=cred.organisation_id, detail={"kind": kind, "sha256": digest})
    return image
