"""Where a visible signature goes: an explicit page and box, an existing empty signature field, or
a text anchor found on the page (for example the signer's name under the title).

Everything here is a pure function of the PDF bytes; nothing is written. Boxes are
``(x1, y1, x2, y2)`` in PDF points, origin at the bottom left of the page, ``x1 < x2`` and
``y1 < y2``. Client mistakes raise :class:`PlacementError` (a ``ValueError``; the API answers 422).
"""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import SigFieldSpec

Box = tuple[float, float, float, float]

MM = 72 / 25.4  # PDF points per millimetre
DEFAULT_SEAL_MM = 36.0  # a typical round seal of a Vietnamese state body
DEFAULT_ANCHOR_SIZE = (150.0, 60.0)  # fits between the title and the name in a usual layout
PDFTOTEXT_TIMEOUT = 30.0  # seconds; text extraction of a hostile PDF must not hang a worker
_EPSILON = 0.01  # points; tolerate rounding when a box touches the page edge

_WORD_RE = re.compile(
    r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)">(.*?)</word>', re.S)
_PAGE_RE = re.compile(r'<page width="[-\d.]+" height="[-\d.]+">')


class PlacementError(ValueError):
    """The requested placement cannot be used with this PDF (the message says why, in English)."""


@dataclass(frozen=True)
class Placement:
    """Exactly one of: ``page`` (1-based) with ``box``; ``field_name``; ``anchor``.

    For an anchor, the box has ``size`` (w, h), is centred horizontally on the anchor text and sits
    just above it (in Vietnamese documents the signature goes between the title and the name
    printed under it), then is moved by ``anchor_offset`` (dx, dy). ``anchor_page`` (1-based)
    limits the search to one page; by default the first hit in page order wins.
    """

    page: int | None = None
    box: Box | None = None
    field_name: str | None = None
    anchor: str | None = None
    anchor_page: int | None = None
    anchor_offset: tuple[float, float] = (0.0, 0.0)
    size: tuple[float, float] = DEFAULT_ANCHOR_SIZE

    def __post_init__(self) -> None:
        self._validate()
        # Store plain float tuples (JSON gives lists, ints): hashable and what pyHanko expects.
        if self.box is not None:
            object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "anchor_offset", tuple(float(v) for v in self.anchor_offset))
        object.__setattr__(self, "size", tuple(float(v) for v in self.size))

    def _validate(self) -> None:
        kinds = [self.box is not None or self.page is not None, self.field_name is not None,
                 self.anchor is not None]
        if sum(kinds) != 1:
            raise PlacementError("give exactly one of: page and box, field_name, anchor")
        if self.box is not None or self.page is not None:
            if self.box is None or self.page is None:
                raise PlacementError("an explicit placement needs both page and box")
            _check_page_number(self.page, "page")
            _check_box(self.box)
        if self.field_name is not None and not self.field_name.strip():
            raise PlacementError("field_name must not be empty")
        if self.anchor is None:
            if (self.anchor_page is not None or not _pair(self.anchor_offset) or not _pair(self.size)
                    or (*self.anchor_offset, *self.size) != (0.0, 0.0, *DEFAULT_ANCHOR_SIZE)):
                raise PlacementError("anchor_page, anchor_offset and size only apply to an anchor")
            return
        if not _normalise(self.anchor):
            raise PlacementError("anchor must contain some text")
        if self.anchor_page is not None:
            _check_page_number(self.anchor_page, "anchor_page")
        if not _pair(self.anchor_offset) or not all(map(_finite, self.anchor_offset)):
            raise PlacementError("anchor_offset must be two finite numbers (dx, dy)")
        if not _pair(self.size) or not all(_finite(v) and v > 0 for v in self.size):
            raise PlacementError("size must be two positive numbers (width, height)")


@dataclass(frozen=True)
class Resolved:
    """An existing empty signature field (``field_name``) or a new field's page_index and box."""

    field_name: str | None = None
    page_index: int | None = None
    box: Box | None = None

    def sig_field_spec(self, new_field_name: str) -> Any:
        """The pyHanko ``SigFieldSpec`` for a new field, or ``None`` to sign the existing field
        (then sign with ``existing_fields_only=True`` and ``field_name`` in the metadata)."""
        if self.field_name is not None:
            return None
        return SigFieldSpec(new_field_name, on_page=self.page_index, box=self.box)


def resolve(pdf_bytes: bytes, placement: Placement) -> Resolved:
    """Check ``placement`` against the PDF and turn it into a field name or a page and box."""
    reader = _open(pdf_bytes)
    if placement.field_name is not None:
        name, field, widgets = _find_field(reader, placement.field_name)
        if _get(field, "/V") is not None:
            raise PlacementError(f"signature field {name!r} is already signed")
        if not widgets or not any(_area(_normalised_box(w["/Rect"])) > 0 for w in widgets):
            raise PlacementError(f"signature field {name!r} is invisible (no area on a page)")
        return Resolved(field_name=name)
    if placement.anchor is not None:
        page_index, anchor_box = _find_anchor(pdf_bytes, reader, placement)
        (ax1, _, ax2, ay2), (w, h) = anchor_box, placement.size
        dx, dy = placement.anchor_offset
        centre = (ax1 + ax2) / 2
        box = (centre - w / 2 + dx, ay2 + dy, centre + w / 2 + dx, ay2 + h + dy)
        _check_on_page(reader, page_index, box, "the box above the anchor")
        return Resolved(page_index=page_index, box=box)
    assert placement.page is not None
    assert placement.box is not None
    page_index, count = placement.page - 1, _page_count(reader)
    if page_index >= count:
        raise PlacementError(f"page {placement.page} does not exist (the PDF has {count} page(s))")
    _check_on_page(reader, page_index, placement.box, "the box")
    return Resolved(page_index=page_index, box=placement.box)


def seal_box(signature_box: Box, seal_size_mm: float = DEFAULT_SEAL_MM) -> Box:
    """The box of the organisation's seal (``issued``) next to the leader's signature box.

    Decree 30 practice: the seal, at its real size, covers about the left third of the signature.
    So the seal's right edge sits one third of the way into the signature box (its right part
    covers that third and the rest hangs out to the left), and both share a vertical centre::

        +-----------+
        |   seal  +-|-------------------+
        |         | |  signature        |
        |         +-|-------------------+
        +-----------+
                 x1  x1 + w/3           x2

    This uses the signature field's box; the image is centred in it with its aspect ratio kept.
    """
    _check_box(signature_box)
    if not (_finite(seal_size_mm) and seal_size_mm > 0):
        raise PlacementError("the seal size must be a positive number of millimetres")
    x1, y1, x2, y2 = signature_box
    size = seal_size_mm * MM
    right = x1 + (x2 - x1) / 3
    centre_y = (y1 + y2) / 2
    return (right - size, centre_y - size / 2, right, centre_y + size / 2)


def find_signature_box(pdf_bytes: bytes, field_name: str) -> tuple[int, Box]:
    """Page index (0-based) and box of an existing, SIGNED signature field (the leader's
    signature that the seal is placed against)."""
    reader = _open(pdf_bytes)
    name, field, widgets = _find_field(reader, field_name)
    if _get(field, "/V") is None:
        raise PlacementError(f"signature field {name!r} is not signed")
    for widget in widgets:
        box = _normalised_box(widget["/Rect"])
        if _area(box) > 0:
            return _widget_page(reader, widget, name), box
    raise PlacementError(f"signature field {name!r} is invisible (no area on a page)")


def page_box(pdf_bytes: bytes, page_index: int) -> Box:
    """The visible area (CropBox within MediaBox) of a page, which must not be rotated."""
    reader = _open(pdf_bytes)
    if not 0 <= page_index < _page_count(reader):
        raise PlacementError(f"page {page_index + 1} does not exist")
    return _visible_box(reader, page_index)


# --- PDF structure ---------------------------------------------------------------------------

def _open(pdf_bytes: bytes) -> Any:
    try:
        reader = PdfFileReader(BytesIO(pdf_bytes), strict=False)
        encrypted = reader.encrypted
        if not encrypted:
            _page_count(reader)  # a broken page tree fails here, as a clear error
    except (PdfError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise PlacementError(f"the PDF could not be read ({exc})") from exc
    if encrypted:
        raise PlacementError("the PDF is encrypted")
    return reader


def _page_count(reader: Any) -> int:
    return int(reader.root["/Pages"]["/Count"])


def _get(node: Any, key: str) -> Any:
    """``node[key]`` dereferenced, or None (pyHanko's ``get`` may return an indirect reference)."""
    try:
        return node[key]
    except KeyError:
        return None


def _inherited(node: Any, key: str) -> Any:
    """/MediaBox, /CropBox, /Rotate, /FT may sit on an ancestor (bounded: trees can be cyclic)."""
    for _ in range(64):
        if node is None or key in node:
            return None if node is None else node[key]
        node = _get(node, "/Parent")
    return None


def _visible_box(reader: Any, page_index: int) -> Box:
    page = reader.find_page_for_modification(page_index)[0].get_object()
    rotate = int(_inherited(page, "/Rotate") or 0) % 360
    if rotate:
        # Rotated pages would need every coordinate (and poppler's) turned; documents from the
        # document systems are upright, so refuse rather than put a signature in the wrong place.
        raise PlacementError(f"page {page_index + 1} is rotated by {rotate} degrees; "
                             "only upright pages are supported")
    media = _inherited(page, "/MediaBox")
    if media is None:
        raise PlacementError(f"page {page_index + 1} has no MediaBox")
    mx1, my1, mx2, my2 = _normalised_box(media)
    crop = _inherited(page, "/CropBox")
    if crop is None:
        return (mx1, my1, mx2, my2)
    cx1, cy1, cx2, cy2 = _normalised_box(crop)
    return (max(mx1, cx1), max(my1, cy1), min(mx2, cx2), min(my2, cy2))


def _check_on_page(reader: Any, page_index: int, box: Box, what: str) -> None:
    px1, py1, px2, py2 = _visible_box(reader, page_index)
    x1, y1, x2, y2 = box
    if x1 < px1 - _EPSILON or y1 < py1 - _EPSILON or x2 > px2 + _EPSILON or y2 > py2 + _EPSILON:
        raise PlacementError(
            f"{what} ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}) does not lie within page "
            f"{page_index + 1} ({px1:.1f}, {py1:.1f}, {px2:.1f}, {py2:.1f})")


def _iter_fields(refs: Any, parent: str, depth: int) -> Iterator[tuple[str, Any, str | None, list[Any]]]:
    """(qualified name, terminal field, /FT inherited, widget annotations) for each field."""
    if depth > 32:  # a malicious form tree could be cyclic
        return
    for ref in refs:
        node = ref.get_object()
        partial = _get(node, "/T")
        name = f"{parent}.{partial}" if parent and partial else str(partial or parent)
        kids = _get(node, "/Kids")
        if kids is not None and any("/T" in kid.get_object() for kid in kids):
            yield from _iter_fields(kids, name, depth + 1)
            continue
        widgets = [kid.get_object() for kid in kids] if kids is not None else [node]
        ftype = _inherited(node, "/FT")
        yield name, node, None if ftype is None else str(ftype), [w for w in widgets if "/Rect" in w]


def _find_field(reader: Any, wanted: str) -> tuple[str, Any, list[Any]]:
    try:
        refs = reader.root["/AcroForm"]["/Fields"]
    except KeyError:
        refs = []
    fields = list(_iter_fields(refs, "", 0))
    for name, node, ftype, widgets in fields:
        if name == wanted:
            if ftype != "/Sig":
                raise PlacementError(f"field {wanted!r} is not a signature field")
            return name, node, widgets
    existing = sorted(name for name, _, ftype, _ in fields if ftype == "/Sig")
    hint = ", ".join(map(repr, existing)) if existing else "none"
    raise PlacementError(f"the PDF has no field named {wanted!r} (signature fields: {hint})")


def _widget_page(reader: Any, widget: Any, name: str) -> int:
    pages = [reader.find_page_for_modification(i)[0] for i in range(_page_count(reader))]
    page_ref = widget.raw_get("/P") if "/P" in widget else None
    for index, ref in enumerate(pages):
        if page_ref is not None and ref.reference == page_ref.reference:
            return index
        annots = _get(ref.get_object(), "/Annots") or []
        if any(annot.get_object() is widget for annot in annots):
            return index
    raise PlacementError(f"signature field {name!r} is not on any page")


def _normalised_box(values: Any) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


def _area(box: Box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


# --- text anchors ----------------------------------------------------------------------------

_Token = tuple[str, Box]  # a word and its box as poppler gives it (top-left origin)


def _find_anchor(pdf_bytes: bytes, reader: Any, placement: Placement) -> tuple[int, Box]:
    count = _page_count(reader)
    if placement.anchor_page is not None and placement.anchor_page > count:
        raise PlacementError(f"anchor_page {placement.anchor_page} does not exist "
                             f"(the PDF has {count} page(s))")
    first = placement.anchor_page or 1
    last = placement.anchor_page or count
    assert placement.anchor is not None
    anchor = _normalise(placement.anchor)
    # Word boundaries: "An" must not match inside "Anh"; tokens are joined by single spaces.
    pattern = re.compile(r"(?<!\w)" + re.escape(anchor) + r"(?!\w)")
    for offset, tokens in enumerate(_pdftotext_words(pdf_bytes, first, last)):
        page_index = first - 1 + offset
        text, starts = "", []
        for token in tokens:
            starts.append(len(text))
            text += token[0] + " "
        match = pattern.search(text)
        if match is None:
            continue
        vx1, _, _, vy2 = _visible_box(reader, page_index)
        boxes = [_char_span_box(tok, start, match.start(), match.end())
                 for tok, start in zip(tokens, starts, strict=True)
                 if start < match.end() and start + len(tok[0]) > match.start()]
        # poppler measures from the top left of the visible area; PDF from the bottom left.
        x1 = vx1 + min(b[0] for b in boxes)
        x2 = vx1 + max(b[2] for b in boxes)
        y_top = vy2 - min(b[1] for b in boxes)
        y_bottom = vy2 - max(b[3] for b in boxes)
        return page_index, (x1, y_bottom, x2, y_top)
    where = f"page {placement.anchor_page}" if placement.anchor_page else "any page"
    raise PlacementError(f"anchor text {placement.anchor!r} was not found on {where}")


def _char_span_box(token: _Token, start: int, match_start: int, match_end: int) -> Box:
    """The part of a token's box covered by the match. poppler gives one box per word (or per
    phrase, for text wrapped in /ActualText); split it in proportion to the characters."""
    n = len(token[0])
    lo = max(0, match_start - start)
    hi = min(n, match_end - start)
    x1, y1, x2, y2 = token[1]
    return (x1 + (x2 - x1) * lo / n, y1, x1 + (x2 - x1) * hi / n, y2)


def _pdftotext_words(pdf_bytes: bytes, first: int, last: int) -> Iterator[list[_Token]]:
    """The words of each page from ``first`` to ``last`` (1-based), in reading order."""
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:  # a deployment problem, not the client's: not a 422
        raise RuntimeError("pdftotext (poppler-utils) is not installed")
    # -cropbox: coordinates from the top left of the visible area (default: of the MediaBox).
    argv = [pdftotext, "-q", "-bbox", "-cropbox", "-enc", "UTF-8", "-f", str(first), "-l", str(last),
            "-", "-"]
    try:
        done = subprocess.run(argv, input=pdf_bytes, capture_output=True, timeout=PDFTOTEXT_TIMEOUT,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        raise PlacementError("searching the PDF's text for the anchor took too long") from exc
    if done.returncode != 0:
        raise PlacementError("the PDF's text could not be extracted to find the anchor")
    for chunk in _PAGE_RE.split(done.stdout.decode("utf-8", errors="replace"))[1:]:
        # A poppler "word" can hold several words (text in an /ActualText span); the joined
        # search text keeps its spaces and _char_span_box splits its box when needed.
        tokens = [(_normalise(html.unescape(raw)), (float(x1), float(y1), float(x2), float(y2)))
                  for x1, y1, x2, y2, raw in _WORD_RE.findall(chunk)]
        yield tokens


def _normalise(text: str) -> str:
    """NFC (Vietnamese text arrives precomposed or decomposed) with runs of spaces collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value: object) -> bool:  # JSON gives lists
    return isinstance(value, tuple | list) and len(value) == 2


def _check_page_number(page: object, what: str) -> None:
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise PlacementError(f"{what} must be a page number starting at 1")


def _check_box(box: object) -> None:
    if not isinstance(box, tuple | list) or len(box) != 4 or not all(map(_finite, box)):
        raise PlacementError("a box must be four finite numbers (x1, y1, x2, y2) in points")
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        raise PlacementError("a box must have x1 < x2 and y1 < y2 (origin at the bottom left)")
