"""Request and response bodies of the signing API (pydantic: validated input and JSON Schema)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Profile = Literal["approved", "issued", "appendix", "copy"]
Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]
Format = Literal["pades", "cades", "raw"]
HashAlgorithm = Literal["sha256", "sha384", "sha512"]
CopyForm = Literal["SAO Y", "SAO LỤC", "TRÍCH SAO"]
HASH_SIZES = {"sha256": 32, "sha384": 48, "sha512": 64}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
MAX_FILES = 100  # PDFs or files per request: each is prepared and shown to the approver
MAX_HASHES = 1000  # bare hashes per request: cheap to prepare, one approval for the batch


class PlacementIn(BaseModel):
    """Where a visible signature goes: a page and box, an empty field, or a text anchor."""

    model_config = ConfigDict(extra="forbid")
    page: int | None = Field(default=None, ge=1, description="1-based page for `box`")
    box: tuple[float, float, float, float] | None = Field(
        default=None, description="x1, y1, x2, y2 in PDF points, origin bottom-left")
    field_name: str | None = Field(default=None, max_length=120, description="an existing empty signature field")
    anchor: str | None = Field(default=None, max_length=200, description="text to place the signature at")
    anchor_page: int | None = Field(default=None, ge=1)
    size: tuple[float, float] | None = Field(default=None, description="box width and height for an anchor")

    @model_validator(mode="after")
    def _one_kind(self) -> PlacementIn:
        kinds = [self.box is not None, self.field_name is not None, self.anchor is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of: page+box, field_name, anchor")
        if self.box is not None and self.page is None:
            raise ValueError("a box needs its page")
        return self


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=255, description="title shown to the approver")
    format: Format = Field(description="pades: PDF signature; cades: detached CMS over any file; "
                                       "raw: sign a bare hash")
    content: str | None = Field(default=None, description="the file, base64 (JSON uploads)")
    file: str | None = Field(default=None, max_length=120, description="multipart part holding the file")
    hash: str | None = Field(default=None, description="hex digest, for format raw")
    hash_algorithm: HashAlgorithm = "sha256"
    profile: Profile | None = None
    level: Level = "B-B"
    placement: PlacementIn | None = None
    reason: str | None = Field(default=None, max_length=255)
    location: str | None = Field(default=None, max_length=255)
    document_number: str | None = Field(default=None, max_length=64, description="số, ký hiệu (appendix)")
    copy_form: CopyForm | None = None
    copying_organisation: str | None = Field(default=None, max_length=255)

    @field_validator("content")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("content is not valid base64") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DocumentIn:
        if self.format == "raw":
            if self.hash is None or self.content is not None or self.file is not None:
                raise ValueError("format raw takes `hash` and no file")
            if not _HEX.match(self.hash) or len(self.hash) != 2 * HASH_SIZES[self.hash_algorithm]:
                raise ValueError(f"hash must be {HASH_SIZES[self.hash_algorithm]} bytes of hex "
                                 f"for {self.hash_algorithm}")
            return self
        if (self.content is None) == (self.file is None):
            raise ValueError("give the file as `content` (base64) or `file` (multipart part name)")
        if self.format == "cades" and self.level not in ("B-B", "B-T"):
            raise ValueError("detached CMS supports levels B-B and B-T")
        if self.format == "pades":
            if self.profile is None:
                raise ValueError("format pades needs a profile")
            if self.profile == "appendix" and not self.document_number:
                raise ValueError("profile appendix needs document_number")
            if self.profile == "copy" and not self.copy_form:
                raise ValueError("profile copy needs copy_form")
            if self.profile == "approved" and self.placement is None:
                raise ValueError("profile approved needs a placement")
        return self


class SignRequestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credential_id: str = Field(min_length=1, max_length=36)
    documents: list[DocumentIn] = Field(
        min_length=1, max_length=MAX_HASHES,
        description=f"up to {MAX_FILES} files (pades, cades), or up to {MAX_HASHES} when all are raw hashes")
    callback_url: str | None = Field(default=None, max_length=2048, pattern=r"^https?://[^\s]+$")
    expires_in: int = Field(default=300, ge=30, le=3600, description="seconds the holder has to approve")

    @model_validator(mode="after")
    def _batch_size(self) -> SignRequestIn:
        files = sum(1 for d in self.documents if d.format != "raw")
        if files and len(self.documents) > MAX_FILES:
            raise ValueError(f"a request with files holds at most {MAX_FILES} documents "
                             f"(only raw hashes may come {MAX_HASHES} at a time)")
        return self


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device_id: str = Field(min_length=1, max_length=36)
    challenge: str = Field(pattern=r"^[0-9a-f]{64}$", description="the challenge the device signed, hex")
    verification_code: str = Field(pattern=r"^\d{4}$", description="the code the holder picked")
    signature: str | None = Field(default=None, min_length=8, max_length=4096,
                                  description="app key: ECDSA-SHA256 over the challenge, DER, base64")
    pin: str | None = Field(default=None, pattern=r"^\d{6,12}$", description="app key: the holder's PIN")
    passkey: dict[str, Any] | None = Field(
        default=None, description="passkey: the PublicKeyCredential from navigator.credentials.get over the "
                                  "challenge, binary fields base64url (as toJSON() gives)")

    @model_validator(mode="after")
    def _one_proof(self) -> ApprovalIn:
        if (self.signature is None) == (self.passkey is None):
            raise ValueError("give `signature` and `pin` (app key) or `passkey`")
        if self.signature is not None and self.pin is None:
            raise ValueError("an app key approval needs the PIN")
        return self


class RefusalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)
