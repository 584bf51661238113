"""Test PDFs (pyHanko's writer, Liberation Serif) and signature/seal PNGs, made on the fly.

``decision_pdf`` imitates a Vietnamese decision (Decree 30 layout): header, number, title, body,
and at the bottom right "CHỦ TỊCH", room for the signature, then the signer's name. Its text is
extractable (ToUnicode maps), so ``pdftotext`` finds anchors. Results are cached: they are bytes.
"""

from __future__ import annotations

import functools
from io import BytesIO
from typing import Any

from PIL import Image, ImageDraw
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign.fields import SigFieldSpec, append_signature_field

from signer.signing.appearance import serif_font

A4 = (0.0, 0.0, 595.28, 841.89)
MM = 72 / 25.4
LEFT, RIGHT = 30 * MM, A4[2] - 15 * MM  # Decree 30 margins: 30-35 mm left, 15-20 mm right
NAME = "Nguyễn Văn An"
TITLE = "CHỦ TỊCH"
# The signature block: title baseline, then the name 90 pt lower. Leaves room for a 60 pt box.
TITLE_Y, NAME_Y = 250.0, 160.0
BLOCK_CENTRE_X = 440.0

_BODY = [
    "Căn cứ Luật Tổ chức chính quyền địa phương ngày 19 tháng 6 năm 2015;",
    "Căn cứ Nghị định số 30/2020/NĐ-CP ngày 05 tháng 3 năm 2020 của Chính phủ về công tác văn thư;",
    "Xét đề nghị của Giám đốc Sở Nội vụ tại Tờ trình số 112/TTr-SNV ngày 10 tháng 11 năm 2026.",
    "Điều 1. Phê duyệt kế hoạch chuyển đổi số năm 2027 của Ủy ban nhân dân tỉnh.",
    "Điều 2. Giao Sở Thông tin và Truyền thông chủ trì, phối hợp với các sở, ngành triển khai.",
    "Điều 3. Quyết định này có hiệu lực kể từ ngày ký.",
]


class _Page:
    """A page's content stream, written line by line with shaped, extractable text."""

    def __init__(self, regular: Any, bold: Any) -> None:
        # One engine per font and writer, shared by all pages: one embedded subset each.
        self.regular, self.bold = regular, bold
        self.ops: list[bytes] = []

    def text(self, txt: str, x: float, y: float, *, size: int = 13, bold: bool = False,
             align: str = "left") -> None:
        engine = self.bold if bold else self.regular
        engine.font_size = size
        # Without /ActualText spans poppler sees separate words, as in office-made PDFs.
        shaped = engine.shape(txt, with_actual_text=False)
        width = shaped.x_advance * size
        if align == "centre":
            x -= width / 2
        elif align == "right":
            x -= width
        font = b"/F2" if bold else b"/F1"
        self.ops.append(b"BT %s %d Tf %g %g Td %s ET" % (font, size, x, y, shaped.graphics_ops))

    def add_to(self, writer: Any) -> None:
        fonts = generic.DictionaryObject({pdf_name("/F1"): self.regular.as_resource(),
                                          pdf_name("/F2"): self.bold.as_resource()})
        stream = generic.StreamObject(stream_data=b"\n".join(self.ops))
        resources = generic.DictionaryObject({pdf_name("/Font"): fonts})
        writer.insert_page(PageObject(writer.add_object(stream), A4, resources=resources))


def _write(writer: Any) -> bytes:
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


@functools.cache
def decision_pdf(pages: int = 1) -> bytes:
    """A Vietnamese decision on A4 ``pages`` pages; the signature block is on the last page."""
    writer = PdfFileWriter(stream_xrefs=False)
    regular = serif_font(13).create_font_engine(writer)
    bold = serif_font(13, style="Bold").create_font_engine(writer)
    for number in range(1, pages + 1):
        page = _Page(regular, bold)
        if number == 1:
            page.text("ỦY BAN NHÂN DÂN", 150, 722, size=12, align="centre")
            page.text("TỈNH TÂY NINH", 150, 707, size=12, bold=True, align="centre")
            page.text("CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", 400, 722, size=12, bold=True, align="centre")
            page.text("Độc lập - Tự do - Hạnh phúc", 400, 707, size=13, bold=True, align="centre")
            page.text("Số: 07/QĐ-UBND", 150, 684, align="centre")
            page.text("Tây Ninh, ngày 21 tháng 11 năm 2026", 400, 684, align="centre")
            page.text("QUYẾT ĐỊNH", A4[2] / 2, 640, size=14, bold=True, align="centre")
            page.text("Về việc phê duyệt kế hoạch chuyển đổi số năm 2027", A4[2] / 2, 622, bold=True,
                      align="centre")
        top = 590 if number == 1 else 760
        for i, line in enumerate(_BODY):
            page.text(line, LEFT, top - 20 * i, size=12)
        page.text(f"Trang {number}/{pages}", RIGHT, 40, size=10, align="right")
        if number == pages:
            page.text("Nơi nhận:", LEFT, 300, size=12, bold=True)
            page.text("- Như Điều 3;", LEFT, 285, size=11)
            page.text("- Lưu: VT.", LEFT, 271, size=11)
            page.text("TM. ỦY BAN NHÂN DÂN", BLOCK_CENTRE_X, 300 - 35, bold=True, align="centre")
            page.text(TITLE, BLOCK_CENTRE_X, TITLE_Y, bold=True, align="centre")
            page.text(NAME, BLOCK_CENTRE_X, NAME_Y, bold=True, align="centre")
        page.add_to(writer)
    return _write(writer)


@functools.cache
def cropped_pdf() -> bytes:
    """``decision_pdf()`` with a CropBox whose origin is not the MediaBox's."""
    writer = IncrementalPdfFileWriter(BytesIO(decision_pdf()))
    page = writer.find_page_for_modification(0)[0].get_object()
    page["/CropBox"] = generic.ArrayObject(map(generic.FloatObject, (50, 60, 545, 800)))
    writer.update_container(page)
    return _write(writer)


@functools.cache
def blank_pdf() -> bytes:
    """One empty A4 page."""
    writer = PdfFileWriter(stream_xrefs=False)
    writer.insert_page(PageObject(writer.add_object(generic.StreamObject(stream_data=b"")), A4))
    return _write(writer)


@functools.cache
def rotated_pdf() -> bytes:
    """One A4 page with /Rotate 90 (unsupported for placement)."""
    writer = PdfFileWriter(stream_xrefs=False)
    page = PageObject(writer.add_object(generic.StreamObject(stream_data=b"")), A4)
    page["/Rotate"] = generic.NumberObject(90)
    writer.insert_page(page)
    return _write(writer)


@functools.cache
def pdf_with_empty_field(name: str = "ChuKy", page: int = 1,
                         box: tuple[float, float, float, float] = (365, 175, 515, 240)) -> bytes:
    """``decision_pdf(page)`` with an empty signature field added in an incremental update (as a
    document system would prepare it). ``page`` is 1-based."""
    writer = IncrementalPdfFileWriter(BytesIO(decision_pdf(page)))
    append_signature_field(writer, SigFieldSpec(name, on_page=page - 1, box=box))
    return _write(writer)


@functools.cache
def pdf_with_text_field(name: str = "GhiChu") -> bytes:
    """``decision_pdf()`` with a text (not signature) form field."""
    writer = IncrementalPdfFileWriter(BytesIO(decision_pdf()))
    page_ref = writer.find_page_for_modification(0)[0]
    field = generic.DictionaryObject({
        pdf_name("/FT"): pdf_name("/Tx"), pdf_name("/T"): generic.TextStringObject(name),
        pdf_name("/Type"): pdf_name("/Annot"), pdf_name("/Subtype"): pdf_name("/Widget"),
        pdf_name("/Rect"): generic.ArrayObject(map(generic.FloatObject, (100, 100, 200, 120))),
        pdf_name("/P"): page_ref,
    })
    field_ref = writer.add_object(field)
    writer.register_annotation(page_ref, field_ref)
    writer.root["/AcroForm"] = generic.DictionaryObject(
        {pdf_name("/Fields"): generic.ArrayObject([field_ref])})
    writer.update_root()
    return _write(writer)


@functools.cache
def encrypted_pdf() -> bytes:
    """A one-page PDF encrypted with the standard security handler (user password "user")."""
    writer = PdfFileWriter(stream_xrefs=False)
    writer.insert_page(PageObject(writer.add_object(generic.StreamObject(stream_data=b"")), A4))
    writer.encrypt("owner", "user")
    return _write(writer)


def truncated_pdf() -> bytes:
    """The first half of ``decision_pdf()``: no xref table, no trailer."""
    data = decision_pdf()
    return data[: len(data) // 2]


# --- images ----------------------------------------------------------------------------------

def signature_png() -> bytes:
    """A blue handwritten-looking stroke on a transparent background."""
    img = Image.new("RGBA", (600, 240), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    blue = (20, 40, 170, 255)
    draw.line([(40, 170), (120, 60), (160, 190), (230, 70), (280, 160), (360, 90), (420, 150)],
              fill=blue, width=9, joint="curve")
    draw.arc((300, 40, 560, 210), 200, 520, fill=blue, width=8)
    draw.line([(60, 205), (540, 190)], fill=blue, width=5)
    return png(img)


def seal_png() -> bytes:
    """A red round seal: two rings and a star, transparent outside and between the strokes."""
    img = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    red = (215, 25, 32, 235)
    draw.ellipse((8, 8, 392, 392), outline=red, width=14)
    draw.ellipse((70, 70, 330, 330), outline=red, width=6)
    star = [(200, 110), (222, 175), (290, 175), (235, 215), (256, 282), (200, 242), (144, 282), (165, 215),
            (110, 175), (178, 175)]
    draw.polygon(star, fill=red)
    return png(img)


def png(img: Image.Image) -> bytes:
    out = BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def image_png(mode: str, size: tuple[int, int] = (40, 20), **save: Any) -> bytes:
    """A tiny PNG of ``mode``; RGBA and LA get one transparent pixel."""
    img = Image.new(mode, size)
    if mode in ("RGBA", "LA"):
        img.putpixel((0, 0), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    out = BytesIO()
    img.save(out, format="PNG", **save)
    return out.getvalue()
