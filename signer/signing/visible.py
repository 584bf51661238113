"""Turns a document's profile and placement into pyHanko's field, stamp style and text
parameters (Decree 30/2020 Appendix I: see :mod:`signer.signing.appearance`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields

from signer.signing import appearance, placement
from signer.signing.errors import InvalidDocument
from signer.signing.material import CredentialMaterial
from signer.signing.schemas import DocumentIn


@dataclass(frozen=True)
class Look:
    field_name: str
    new_field: fields.SigFieldSpec | None  # None: sign the existing empty field ``field_name``
    stamp_style: Any
    text_params: dict[str, str]


def _field_name(reader: PdfFileReader, profile: str) -> str:
    """A fresh field name, readable in viewers' signature panels."""
    taken = {str(name) for name, _, _ in fields.enumerate_sig_fields(reader, filled_status=None)}
    base = {"approved": "ChuKyLanhDao", "issued": "ChuKyCoQuan", "appendix": "ChuKyPhuLuc",
            "copy": "ChuKyBanSao"}[profile]
    n = 1
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def _placement(doc: DocumentIn) -> placement.Placement | None:
    p = doc.placement
    if p is None:
        return None
    if p.anchor is not None:
        kwargs: dict[str, Any] = {"anchor": p.anchor, "anchor_page": p.anchor_page}
        if p.size is not None:
            kwargs["size"] = p.size
        return placement.Placement(**kwargs)
    if p.field_name is not None:
        return placement.Placement(field_name=p.field_name)
    return placement.Placement(page=p.page, box=p.box)


def appearance_for(doc: DocumentIn, content: bytes, material: CredentialMaterial, *,
                   organisation_name: str, approved_field: str | None,
                   reader: PdfFileReader) -> Look:
    """Field, stamp and text parameters for one PAdES document, or :class:`InvalidDocument`."""
    assert doc.profile is not None
    try:
        stamp = _stamp(doc, material, organisation_name)
        wanted = _placement(doc)
        if doc.profile == "issued" and wanted is None:
            assert approved_field is not None
            page_index, sig_box = placement.find_signature_box(content, approved_field)
            seal_mm = float(material.image_widths.get("seal") or placement.DEFAULT_SEAL_MM)
            resolved = placement.resolve(content, placement.Placement(
                page=page_index + 1, box=placement.seal_box(sig_box, seal_mm)))
        elif wanted is None:  # appendix and copy: top right of page 1
            page_index, box = appearance.default_text_box(content, stamp.lines)
            resolved = placement.Resolved(page_index=page_index, box=box)
        else:
            resolved = placement.resolve(content, wanted)
    except (placement.PlacementError, appearance.AppearanceError) as exc:
        raise InvalidDocument(str(exc)) from None
    if resolved.field_name is not None:
        return Look(resolved.field_name, None, stamp.style, stamp.text_params)
    name = _field_name(reader, doc.profile)
    return Look(name, resolved.sig_field_spec(name), stamp.style, stamp.text_params)


def _stamp(doc: DocumentIn, material: CredentialMaterial, organisation_name: str) -> appearance.Stamp:
    if doc.profile == "approved":
        image = material.images.get("signature")
        if image is None:
            raise appearance.AppearanceError("the credential has no signature image; upload one first")
        return appearance.stamp_style("approved", image_png=image)
    if doc.profile == "issued":
        image = material.images.get("seal")
        if image is None:
            raise appearance.AppearanceError("the credential has no seal image; upload one first")
        return appearance.stamp_style("issued", image_png=image)
    if doc.profile == "appendix":
        return appearance.stamp_style("appendix", number=doc.document_number)
    return appearance.stamp_style("copy", copy_form=doc.copy_form,
                                  organisation=doc.copying_organisation or organisation_name)
