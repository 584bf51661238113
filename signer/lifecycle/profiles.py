"""Certificate and subject profiles as data.

A *certificate profile* says what a certificate may be: allowed key specs, key usage, extended key
usage, validity, policy OIDs, which kind of credential it certifies and whether the same key may be
renewed. A *subject profile* says which subject fields a request must (or may) carry, in which X.509
attribute, with which prefix (Vietnamese CAs put identity numbers into UID as ``CCCD:...`` or the
organisation's QCVN 102 code as ``MCQ:...``). Both are JSON documents: built-in defaults below,
overridden per deployment by rows in ``pki_profiles`` (admin API ``PUT /v1/admin/profiles/...``).
"""

from __future__ import annotations

from typing import Any, Literal

from cryptography import x509
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

import hsm
from signer import audit
from signer.authz import MANAGERS, require_roles
from signer.errors import InvalidInput, NotFound
from signer.lifecycle.models import ProfileDocument
from signer.models import Organisation, utcnow
from signer.pki import profiles as pki_profiles
from signer.principal import Principal

ProfileKind = Literal["certificate", "subject"]

#: Subject attributes a profile may use (X.509 names as RFC 4514 short names).
ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "C": NameOID.COUNTRY_NAME,
    "T": NameOID.TITLE, "UID": NameOID.USER_ID, "E": NameOID.EMAIL_ADDRESS,
    "serialNumber": NameOID.SERIAL_NUMBER,
}
# RFC 5280 upper bounds (C is exactly two letters).
_MAX_LENGTH = {"CN": 64, "O": 64, "OU": 64, "L": 128, "ST": 128, "T": 64, "UID": 256, "E": 255,
               "serialNumber": 64, "C": 2}
_EKU_NAMES = {"emailProtection": "1.3.6.1.5.5.7.3.4", "documentSigning": "1.3.6.1.4.1.311.10.3.12",
              "adobeAuthenticDocuments": "1.2.840.113583.1.1.5", "clientAuth": "1.3.6.1.5.5.7.3.2"}


class CertificateProfile(BaseModel):
    """What a certificate of this profile may be."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    title: str = Field(min_length=1, max_length=200)  # what people see
    credential_kind: Literal["personal", "organisation"]
    key_specs: tuple[str, ...] = Field(min_length=1)
    key_usage: tuple[str, ...] = Field(min_length=1)
    extended_key_usage: tuple[str, ...] = ()  # names above or dotted OIDs
    validity_days: int = Field(ge=1, le=20 * 366)
    policy_oids: tuple[str, ...] = ()
    renew_same_key: bool = True

    @field_validator("key_specs")
    @classmethod
    def _known_specs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(hsm.KEY_SPECS))
        if unknown:
            raise ValueError(f"unknown key specs {unknown}; known: {sorted(hsm.KEY_SPECS)}")
        return value

    @field_validator("key_usage")
    @classmethod
    def _known_usage(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - pki_profiles.KEY_USAGE_NAMES)
        if unknown:
            raise ValueError(f"unknown key usage {unknown}")
        if {"key_cert_sign", "crl_sign"} & set(value):
            raise ValueError("end-entity profiles cannot certify or sign CRLs")
        return value

    @field_validator("extended_key_usage", "policy_oids")
    @classmethod
    def _oids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for oid in value:
            pki_profiles.check_oid(_EKU_NAMES.get(oid, oid))
        return value

    def pki_profile(self) -> pki_profiles.Profile:
        """The built-in CA's profile for this certificate profile."""
        policy = self.policy_oids[0] if self.policy_oids else None
        arc, _, suffix = policy.rpartition(".") if policy else (pki_profiles.DEFAULT_POLICY_ARC, "", None)
        return pki_profiles.Profile(
            name=self.name, validity_days=self.validity_days, key_usage=frozenset(self.key_usage),
            extended_key_usage=tuple(x509.ObjectIdentifier(_EKU_NAMES.get(e, e)) for e in self.extended_key_usage),
            policy_arc=arc, policy_suffix=suffix or None)


class SubjectField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    attribute: str
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")  # name in the request's ``subject`` object
    label: str = Field(min_length=1, max_length=200)
    required: bool = True
    prefix: str = Field(default="", max_length=16)  # e.g. "CCCD:" for a citizen identity number
    pattern: str | None = None  # a regular expression the value (without prefix) must match
    # Where the value comes from when the request does not give it.
    default_from: Literal["organisation_name", "organisation_code", "country"] | None = None

    @field_validator("attribute")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {value!r}; known: {sorted(ATTRIBUTES)}")
        return value


class SubjectProfile(BaseModel):
    """Which subject fields a certificate carries, in order (most general first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    title: str = Field(min_length=1, max_length=200)
    fields: tuple[SubjectField, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _needs_common_name(self) -> SubjectProfile:
        if not any(f.attribute == "CN" and (f.required or f.default_from) for f in self.fields):
            raise ValueError("a subject profile needs a required CN")
        if len({f.key for f in self.fields}) != len(self.fields):
            raise ValueError("field keys must be unique")
        return self

    def build(self, values: dict[str, str], organisation: Organisation) -> x509.Name:
        """The subject name for ``values`` (UTF-8 strings; Vietnamese diacritics kept as typed)."""
        import re
        import unicodedata

        unknown = sorted(set(values) - {f.key for f in self.fields})
        if unknown:
            raise InvalidInput(f"unknown subject fields {unknown} for profile {self.name}", field="subject")
        defaults = {"organisation_name": organisation.name, "organisation_code": organisation.code, "country": "VN"}
        names = []
        for f in self.fields:
            raw = values.get(f.key)
            value = unicodedata.normalize("NFC", raw.strip()) if raw is not None else ""
            if not value and f.default_from:
                value = defaults[f.default_from]
            if not value:
                if f.required:
                    raise InvalidInput(f"subject field {f.key!r} ({f.label}) is required", field=f"subject.{f.key}")
                continue
            if f.pattern and not re.fullmatch(f.pattern, value):
                raise InvalidInput(f"subject field {f.key!r} is not valid", field=f"subject.{f.key}")
            value = f.prefix + value
            if len(value) > _MAX_LENGTH[f.attribute]:
                raise InvalidInput(f"subject field {f.key!r} is longer than {_MAX_LENGTH[f.attribute]} characters",
                                   field=f"subject.{f.key}")
            names.append(x509.NameAttribute(ATTRIBUTES[f.attribute], value))
        return x509.Name(names)


_ORG_FIELDS = (
    {"attribute": "C", "key": "country", "label": "Quốc gia / Country", "default_from": "country",
     "pattern": "[A-Z]{2}"},
    {"attribute": "ST", "key": "province", "label": "Tỉnh/Thành phố / Province", "required": False},
    {"attribute": "L", "key": "locality", "label": "Quận/Huyện / Locality", "required": False},
)
BUILTIN_PROFILES: dict[tuple[str, str], dict[str, Any]] = {
    ("certificate", "personal-signing"): {
        "name": "personal-signing", "title": "Chữ ký số cá nhân (lãnh đạo) / Personal signing",
        "credential_kind": "personal", "key_specs": ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"],
        "key_usage": ["digital_signature", "content_commitment"], "validity_days": 3 * 365 + 1,
        "policy_oids": [f"{pki_profiles.DEFAULT_POLICY_ARC}.1.1"],
    },
    ("certificate", "organisation-seal"): {
        "name": "organisation-seal", "title": "Chữ ký số cơ quan, tổ chức / Organisation seal",
        "credential_kind": "organisation", "key_specs": ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"],
        "key_usage": ["digital_signature", "content_commitment"], "validity_days": 3 * 365 + 1,
        "policy_oids": [f"{pki_profiles.DEFAULT_POLICY_ARC}.1.2"],
    },
    ("subject", "leader"): {
        "name": "leader", "title": "Cá nhân (lãnh đạo) / Person", "fields": [
            *_ORG_FIELDS,
            {"attribute": "O", "key": "organisation", "label": "Cơ quan / Organisation",
             "default_from": "organisation_name"},
            {"attribute": "OU", "key": "unit", "label": "Đơn vị / Unit", "required": False},
            {"attribute": "T", "key": "title", "label": "Chức vụ / Title", "required": False},
            {"attribute": "CN", "key": "full_name", "label": "Họ và tên / Full name"},
            {"attribute": "UID", "key": "citizen_id", "label": "Số CCCD / Citizen ID", "required": False,
             "prefix": "CCCD:", "pattern": "[0-9]{12}"},
        ]},
    ("subject", "organisation"): {
        "name": "organisation", "title": "Cơ quan, tổ chức / Organisation", "fields": [
            *_ORG_FIELDS,
            {"attribute": "CN", "key": "name", "label": "Tên cơ quan / Organisation name",
             "default_from": "organisation_name"},
            {"attribute": "UID", "key": "code", "label": "Mã định danh (QCVN 102) / Organisation code",
             "prefix": "MCQ:", "default_from": "organisation_code"},
        ]},
}


def _model(kind: str) -> type[CertificateProfile] | type[SubjectProfile]:
    if kind == "certificate":
        return CertificateProfile
    if kind == "subject":
        return SubjectProfile
    raise NotFound("profile kind is certificate or subject")


def _parse(kind: str, definition: dict[str, Any]) -> CertificateProfile | SubjectProfile:
    try:
        return _model(kind).model_validate(definition)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"invalid {kind} profile: {where}: {first['msg']}", field=where or None) from None


def all_profiles(session: Session) -> dict[tuple[str, str], CertificateProfile | SubjectProfile]:
    """Built-in profiles overlaid with the deployment's own (same kind and name wins)."""
    docs = dict(BUILTIN_PROFILES)
    for row in session.scalars(select(ProfileDocument)):
        docs[(row.kind, row.name)] = row.definition
    return {key: _parse(key[0], doc) for key, doc in sorted(docs.items())}


def certificate_profile(session: Session, name: str) -> CertificateProfile:
    found = all_profiles(session).get(("certificate", name))
    if not isinstance(found, CertificateProfile):
        raise InvalidInput(f"no certificate profile {name!r}", field="profile")
    return found


def subject_profile(session: Session, name: str) -> SubjectProfile:
    found = all_profiles(session).get(("subject", name))
    if not isinstance(found, SubjectProfile):
        raise InvalidInput(f"no subject profile {name!r}", field="subject_profile")
    return found


def save_profile(session: Session, actor: Principal, kind: str, name: str,
                 definition: dict[str, Any]) -> CertificateProfile | SubjectProfile:
    """Create or replace a deployment profile (admins only); validated before anything is stored."""
    require_roles(actor, MANAGERS, "editing profiles")
    if definition.get("name", name) != name:
        raise InvalidInput("the profile's name must match the URL", field="name")
    profile = _parse(kind, {**definition, "name": name})
    row = session.get(ProfileDocument, (kind, name))
    stored = profile.model_dump(mode="json")
    if row is None:
        session.add(ProfileDocument(kind=kind, name=name, definition=stored))
    else:
        row.definition, row.updated_at = stored, utcnow()
    session.flush()
    audit.record(session, actor=actor.ref, action="profile.save", target=f"profile:{kind}:{name}",
                 detail={"definition": stored})
    return profile
