"""Decree 30 appearances signed for real with pyHanko (in-memory keys, no HSM), checked with
poppler (pdfsig, pdftoppm, pdftotext) and pyHanko's validator.

Regenerate the reference renderings with ``SIGNER_UPDATE_REFERENCE=1 pytest
tests/integration/test_appearance.py`` and look at them before committing.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from PIL import Image, ImageChops, ImageStat
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.signing.appearance import (
    SAMPLE_TIME,
    VN_TZ,
    AppearanceError,
    Stamp,
    default_text_box,
    find_serif_font,
    format_signing_time,
    stamp_style,
    text_width,
    validate_png,
    vn_now,
)
from signer.signing.placement import (
    Placement,
    PlacementError,
    Resolved,
    find_signature_box,
    resolve,
    seal_box,
)
from tests import pdfs
from tests.pdfs import image_png, png, seal_png, signature_png

REFERENCE_DIR = Path(__file__).resolve().parent.parent / "reference"
UPDATE_REFERENCE = os.environ.get("SIGNER_UPDATE_REFERENCE") == "1"
FIXED_TIME = datetime(2026, 11, 21, 14, 5, 9, tzinfo=VN_TZ)
FIXED_TEXT = "2026-11-21T14:05:09+07:00"
DPI = 100
MAX_MEAN_DIFF = 3.0  # grey levels (0-255) averaged over the region: antialiasing noise only


@dataclass(frozen=True)
class Pki:
    signer: Any  # pyHanko SimpleSigner
    root: Any  # asn1crypto certificate


@functools.cache
def _pki(kind: str) -> Pki:
    def key() -> Any:
        if kind == "rsa":
            return rsa.generate_private_key(65537, 2048)
        return ec.generate_private_key(ec.SECP256R1())

    def cert(subject_key: Any, cn: str, issuer: x509.Certificate | None, issuer_key: Any) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                          x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        ca = issuer is None
        # Wide validity: the pinned signing time must fall inside it whatever today is.
        return (x509.CertificateBuilder().subject_name(name)
                .issuer_name(name if issuer is None else issuer.subject)
                .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
                .not_valid_after(datetime(2045, 1, 1, tzinfo=UTC))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=not ca,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(issuer_key, hashes.SHA256()))

    ca_key, leaf_key = key(), key()
    root = cert(ca_key, "Test CA Tây Ninh", None, ca_key)
    leaf = cert(leaf_key, "Nguyễn Văn An", root, ca_key)

    def der(c: x509.Certificate) -> Any:
        return asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))

    pkcs8 = leaf_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    signer = signers.SimpleSigner(signing_cert=der(leaf), signing_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
                                  cert_registry=SimpleCertificateStore.from_certs([der(root)]))
    return Pki(signer, der(root))


@pytest.fixture(scope="module", params=["rsa", "ec"])
def pki(request: pytest.FixtureRequest) -> Pki:
    return _pki(request.param)


class _PinnedPdfSigner(signers.PdfSigner):  # type: ignore[misc]
    """Pins the session's signing time, as the pipeline does: stamp, /M and CMS share it."""

    def __init__(self, *args: Any, signing_time: datetime, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.signing_time = signing_time

    def init_signing_session(self, pdf_out: Any, existing_fields_only: bool = False) -> Any:
        session = super().init_signing_session(pdf_out, existing_fields_only=existing_fields_only)
        session.system_time = self.signing_time
        return session


def sign(pdf: bytes, resolved: Resolved, stamp: Stamp, pki: Pki, *, field: str = "Signature1",
         when: datetime = FIXED_TIME) -> bytes:
    name = resolved.field_name or field
    meta = signers.PdfSignatureMetadata(field_name=name, subfilter=SigSeedSubFilter.PADES,
                                        md_algorithm="sha256", reason="Phê duyệt", location="Tây Ninh")
    pdf_signer = _PinnedPdfSigner(meta, signer=pki.signer, stamp_style=stamp.style,
                                  new_field_spec=resolved.sig_field_spec(name), signing_time=when)
    out = pdf_signer.sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)),
                              existing_fields_only=resolved.field_name is not None,
                              appearance_text_params=stamp.text_params)
    return bytes(out.getvalue())


def _run(*argv: str, data: bytes | None = None) -> str:
    done = subprocess.run(argv, input=data, capture_output=True, timeout=60, check=False)
    return done.stdout.decode("utf-8", errors="replace") + done.stderr.decode("utf-8", errors="replace")


def pdfsig(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "signed.pdf"
    path.write_bytes(pdf)
    return _run("pdfsig", str(path))


def render(pdf: bytes, tmp_path: Path, page: int = 1, mode: str = "L") -> Image.Image:
    path = tmp_path / "render.pdf"
    path.write_bytes(pdf)
    _run("pdftoppm", "-r", str(DPI), "-png", "-f", str(page), "-l", str(page), str(path),
         str(tmp_path / "page"))
    [png] = sorted(tmp_path.glob("page*.png"))
    with Image.open(png) as img:
        result = img.convert(mode)
    png.unlink()
    return result


def text_in(pdf: bytes, tmp_path: Path, box: tuple[float, float, float, float]) -> str:
    """pdftotext of one region of page 1 (in points; pdftotext's default 72 dpi = 1 px per pt)."""
    path = tmp_path / "text.pdf"
    path.write_bytes(pdf)
    height = float(PdfFileReader(BytesIO(pdf), strict=False).root["/Pages"]["/Kids"][0]["/MediaBox"][3])
    x1, y1, x2, y2 = box
    return _run("pdftotext", "-q", "-f", "1", "-l", "1", "-x", str(int(x1)), "-y", str(int(height - y2)),
                "-W", str(int(x2 - x1) + 1), "-H", str(int(y2 - y1) + 1), str(path), "-")


def crop_points(img: Image.Image, box: tuple[float, float, float, float], page_height: float,
                pad: float = 6.0) -> Image.Image:
    scale = DPI / 72
    x1, y1, x2, y2 = box
    return img.crop((round((x1 - pad) * scale), round((page_height - y2 - pad) * scale),
                     round((x2 + pad) * scale), round((page_height - y1 + pad) * scale)))


def compare_reference(region: Image.Image, name: str) -> None:
    path = REFERENCE_DIR / name
    if UPDATE_REFERENCE or not path.exists():
        if not UPDATE_REFERENCE:
            pytest.fail(f"no reference image {path}; run with SIGNER_UPDATE_REFERENCE=1")
        REFERENCE_DIR.mkdir(exist_ok=True)
        region.save(path, optimize=True)
    with Image.open(path) as stored:
        reference = stored.convert("L")
    assert reference.size == region.size, f"{name}: size {region.size} != reference {reference.size}"
    diff = ImageStat.Stat(ImageChops.difference(reference, region)).mean[0]
    assert diff < MAX_MEAN_DIFF, f"{name}: mean pixel difference {diff:.2f} >= {MAX_MEAN_DIFF}"
    darkest = region.getextrema()[0]
    assert isinstance(darkest, int) and darkest < 80, f"{name}: the region has no dark ink"


def _valid_per_pdfsig(out: str, count: int) -> None:
    assert out.count("Signature Validation: Signature is Valid.") == count, out


# --- tests -----------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["approved", "issued", "appendix", "copy"])
def test_each_profile_signs_valid_per_pdfsig(profile: str, pki: Pki, tmp_path: Path) -> None:
    pdf = pdfs.decision_pdf()
    if profile in ("approved", "issued"):
        stamp = stamp_style(profile, image_png=signature_png() if profile == "approved" else seal_png())
        resolved = resolve(pdf, Placement(anchor=pdfs.NAME))
        if profile == "issued" and resolved.box is not None:  # a seal alone, for the check
            resolved = resolve(pdf, Placement(page=1, box=seal_box(resolved.box)))
    else:
        stamp = (stamp_style(profile, copy_form="SAO Y", organisation="Văn phòng UBND tỉnh Tây Ninh")
                 if profile == "copy" else stamp_style(profile, number="Số: 07/QĐ-UBND"))
        page_index, box = default_text_box(pdf, stamp.lines)
        resolved = resolve(pdf, Placement(page=page_index + 1, box=box))
    signed = sign(pdf, resolved, stamp, pki)
    _valid_per_pdfsig(pdfsig(signed, tmp_path), 1)


@pytest.mark.parametrize(("profile", "lines"), [
    ("appendix", ["Số: 07/QĐ-UBND", FIXED_TEXT]),
    ("copy", ["SAO LỤC", "Sở Nội vụ tỉnh Tây Ninh", FIXED_TEXT]),
])
def test_text_stamp_matches_reference(profile: str, lines: list[str], tmp_path: Path) -> None:
    pki = _pki("ec")
    pdf = pdfs.decision_pdf()
    if profile == "appendix":
        stamp = stamp_style("appendix", number=lines[0])
    else:
        stamp = stamp_style("copy", copy_form=lines[0], organisation=lines[1])
    page_index, box = default_text_box(pdf, stamp.lines)
    # Pin the time in UTC: the stamp must still show it in Vietnam time (+07:00).
    signed = sign(pdf, resolve(pdf, Placement(page=page_index + 1, box=box)), stamp, pki,
                  when=FIXED_TIME.astimezone(UTC))
    _valid_per_pdfsig(pdfsig(signed, tmp_path), 1)

    text = text_in(signed, tmp_path, box)
    for line in lines:
        assert line in text, f"{line!r} not in {text!r}"
    # The stamp's time is the signature's own signing time (CMS attribute), to the second.
    embedded = PdfFileReader(BytesIO(signed), strict=False).embedded_signatures[0]
    assert embedded.self_reported_timestamp == FIXED_TIME

    page_height = pdfs.A4[3]
    region = crop_points(render(signed, tmp_path), box, page_height)
    blank = crop_points(render(pdf, tmp_path), box, page_height)
    assert ImageStat.Stat(ImageChops.difference(blank, region)).mean[0] > 1, "nothing was drawn"
    compare_reference(region, f"{profile}_top_right.png")


def test_approved_then_issued_keeps_the_first_signature(pki: Pki, tmp_path: Path) -> None:
    pdf = pdfs.decision_pdf()
    approved = resolve(pdf, Placement(anchor=pdfs.NAME))
    first = sign(pdf, approved, stamp_style("approved", image_png=signature_png()), pki, field="LanhDao")

    page_index, signature_box = find_signature_box(first, "LanhDao")
    assert page_index == approved.page_index
    assert signature_box == pytest.approx(approved.box)
    seal = seal_box(signature_box)
    issued = resolve(first, Placement(page=page_index + 1, box=seal))
    second = sign(first, issued, stamp_style("issued", image_png=seal_png()), pki, field="DonVi",
                  when=FIXED_TIME + timedelta(minutes=3))
    _valid_per_pdfsig(pdfsig(second, tmp_path), 2)

    # The seal covers the left third of the signature box and shares its vertical centre.
    x1, y1, x2, y2 = signature_box
    assert seal[0] < x1 < seal[2] == pytest.approx(x1 + (x2 - x1) / 3)
    assert (seal[1] + seal[3]) / 2 == pytest.approx((y1 + y2) / 2)

    context = ValidationContext(trust_roots=[pki.root], allow_fetching=False)
    sig_approved, sig_issued = PdfFileReader(BytesIO(second), strict=False).embedded_signatures
    status = validate_pdf_signature(sig_approved, context)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.coverage == SignatureCoverageLevel.ENTIRE_REVISION
    assert status.modification_level <= ModificationLevel.FORM_FILLING
    assert status.docmdp_ok
    status = validate_pdf_signature(sig_issued, context)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.coverage == SignatureCoverageLevel.ENTIRE_FILE

    rendering = render(second, tmp_path, mode="RGB")
    rendering.save(Path(os.environ.get("SIGNER_APPEARANCE_OUT", str(tmp_path))) / "approved_issued.png")
    # Red seal ink left of the signature box; blue signature ink in its right two thirds, no red.
    page_height = pdfs.A4[3]
    left_of_signature = crop_points(rendering, (seal[0], seal[1], x1, seal[3]), page_height, pad=0)
    right_of_seal = crop_points(rendering, (seal[2] + 1, y1, x2, y2), page_height, pad=0)
    assert _count(left_of_signature, red=True) > 200
    assert _count(right_of_seal, red=False) > 200
    assert _count(right_of_seal, red=True) == 0


def _count(img: Image.Image, *, red: bool) -> int:
    """Pixels that are clearly red (the seal) or clearly blue (the signature)."""
    pixels: Any = img.get_flattened_data()
    if red:
        return sum(1 for r, g, b in pixels if r > 150 and g < 110 and b < 110)
    return sum(1 for r, g, b in pixels if b > 110 and r < 110 and g < 130)


def test_anchor_box_sits_above_the_name() -> None:
    pdf = pdfs.decision_pdf()
    resolved = resolve(pdf, Placement(anchor="Nguyễn Văn An"))
    assert resolved.page_index == 0
    assert resolved.box is not None
    x1, y1, x2, y2 = resolved.box
    assert (x2 - x1, y2 - y1) == pytest.approx((150, 60))
    assert (x1 + x2) / 2 == pytest.approx(pdfs.BLOCK_CENTRE_X, abs=1.0)
    assert pdfs.NAME_Y < y1 < pdfs.NAME_Y + 15  # just above the name's glyphs
    assert y2 < pdfs.TITLE_Y  # below the title's baseline


def test_anchor_on_a_later_page_and_decomposed_input() -> None:
    pdf = pdfs.decision_pdf(3)
    decomposed = "Nguye\u0302\u0303n Va\u0306n An"  # NFD input must still match
    assert resolve(pdf, Placement(anchor=decomposed)).page_index == 2
    assert resolve(pdf, Placement(anchor="Trang 2/3", size=(40, 20))).page_index == 1
    with pytest.raises(PlacementError, match="not found on page 1"):
        resolve(pdf, Placement(anchor=pdfs.NAME, anchor_page=1))


def test_anchor_on_a_page_with_a_crop_box() -> None:
    # poppler measures from the visible area's corner; the box must not move with the crop.
    expected = resolve(pdfs.decision_pdf(), Placement(anchor=pdfs.NAME)).box
    assert resolve(pdfs.cropped_pdf(), Placement(anchor=pdfs.NAME)).box == pytest.approx(expected)
    with pytest.raises(PlacementError, match=r"within page 1 \(50.0, 60.0, 545.0, 800.0\)"):
        resolve(pdfs.cropped_pdf(), Placement(page=1, box=(20, 100, 120, 150)))


def test_existing_empty_field() -> None:
    pdf = pdfs.pdf_with_empty_field("ChuKy")
    assert resolve(pdf, Placement(field_name="ChuKy")) == Resolved(field_name="ChuKy")


def test_text_stamp_in_an_existing_field(tmp_path: Path) -> None:
    pdf = pdfs.pdf_with_empty_field("ChuKy")
    stamp = stamp_style("appendix", number="Số: 07/QĐ-UBND")
    signed = sign(pdf, resolve(pdf, Placement(field_name="ChuKy")), stamp, _pki("ec"))
    _valid_per_pdfsig(pdfsig(signed, tmp_path), 1)
    with pytest.raises(PlacementError, match="already signed"):
        resolve(signed, Placement(field_name="ChuKy"))
    assert find_signature_box(signed, "ChuKy") == (0, (365.0, 175.0, 515.0, 240.0))


@pytest.mark.parametrize(("pdf", "placement", "message"), [
    (pdfs.decision_pdf, Placement(anchor="Trần Thị Bình"), "was not found"),
    (pdfs.decision_pdf, Placement(anchor="Văn A"), "was not found"),  # whole words only
    (pdfs.decision_pdf, Placement(field_name="ChuKy"), "no field named 'ChuKy'"),
    (pdfs.pdf_with_empty_field, Placement(field_name="Other"), r"signature fields: 'ChuKy'"),
    (pdfs.pdf_with_text_field, Placement(field_name="GhiChu"), "not a signature field"),
    (pdfs.decision_pdf, Placement(page=1, box=(500, 700, 620, 760)), "does not lie within page 1"),
    (pdfs.decision_pdf, Placement(page=2, box=(10, 10, 20, 20)), "the PDF has 1 page"),
    (pdfs.decision_pdf, Placement(anchor=pdfs.NAME, anchor_offset=(0, 700)), "above the anchor"),
    (pdfs.rotated_pdf, Placement(page=1, box=(10, 10, 20, 20)), "rotated by 90 degrees"),
    (pdfs.encrypted_pdf, Placement(page=1, box=(10, 10, 20, 20)), "encrypted"),
    (pdfs.truncated_pdf, Placement(page=1, box=(10, 10, 20, 20)), "could not be read"),
])
def test_placement_errors(pdf: Any, placement: Placement, message: str) -> None:
    with pytest.raises(PlacementError, match=message):
        resolve(pdf(), placement)


def test_find_signature_box_needs_a_signed_field() -> None:
    with pytest.raises(PlacementError, match="is not signed"):
        find_signature_box(pdfs.pdf_with_empty_field("ChuKy"), "ChuKy")


# --- appearance inputs -----------------------------------------------------------------------

@pytest.mark.parametrize(("data", "message"), [
    (b"GIF89a" + b"\0" * 40, "not a PNG"),
    (b"", "not a PNG"),
    (image_png("RGBA")[:60], "could not be decoded"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "could not be decoded"),
    (image_png("RGB"), "no alpha channel"),
    (image_png("L"), "no alpha channel"),
    (png(Image.new("RGBA", (30, 30), (20, 40, 170, 255))), "no transparent pixels"),
    (image_png("RGBA", (4097, 2)), "at most 4096x4096"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024), "larger than 2 MB"),
])
def test_bad_images_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(AppearanceError, match=message):
        stamp_style("approved", image_png=data)


@pytest.mark.parametrize("data", [
    image_png("RGBA"), image_png("LA"), image_png("P", transparency=0), signature_png(), seal_png(),
])
def test_transparent_images_are_accepted(data: bytes) -> None:
    assert validate_png(data).mode == "RGBA"


@pytest.mark.parametrize(("profile", "kwargs", "message"), [
    ("approved", {}, "needs the signature image"),
    ("issued", {}, "needs the seal image"),
    ("appendix", {}, "needs the document number/notation"),
    ("appendix", {"number": "  "}, "needs the document number/notation"),
    ("appendix", {"number": "Số: 07/QĐ-UBND", "image_png": b"x"}, "shows no image"),
    ("appendix", {"number": "Số 中"}, "U\\+4E2D"),
    ("appendix", {"number": "x" * 201}, "longer than 200"),
    ("copy", {"copy_form": "BẢN CHỤP", "organisation": "Sở Nội vụ"}, "copy form must be one of"),
    ("copy", {"copy_form": "SAO Y"}, "needs the copying organisation"),
    ("signed", {}, "unknown profile"),
])
def test_stamp_style_errors(profile: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AppearanceError, match=message):
        stamp_style(profile, **kwargs)


def test_text_stamp_params_keep_user_text_out_of_the_template() -> None:
    stamp = stamp_style("appendix", number="Số:  100%(ts)s/QĐ-UBND")
    assert stamp.text_params == {"number": "Số: 100%(ts)s/QĐ-UBND"}
    assert stamp.lines == ("Số: 100%(ts)s/QĐ-UBND", SAMPLE_TIME)
    decomposed = stamp_style("copy", copy_form="SAO LU\u0323C", organisation="Sở Nội vụ")
    assert decomposed.text_params["copy_form"] == "SAO LỤC"  # NFC


def test_signing_time_format() -> None:
    assert format_signing_time(datetime(2026, 11, 21, 7, 5, 9, 999, tzinfo=UTC)) == FIXED_TEXT
    assert format_signing_time(FIXED_TIME) == FIXED_TEXT
    with pytest.raises(AppearanceError, match="time zone"):
        format_signing_time(datetime(2026, 11, 21, 7, 5, 9))  # naive: the point of the test
    now = vn_now()
    assert now.microsecond == 0
    assert now.utcoffset() == timedelta(hours=7)


def test_font_has_vietnamese_and_sane_widths() -> None:
    assert find_serif_font().name == "LiberationSerif-Regular.ttf"
    # Times New Roman metrics: "Số: 07/QĐ-UBND" at 10 pt is about 72 pt wide, not twice that.
    assert 60 < text_width("Số: 07/QĐ-UBND") < 85
