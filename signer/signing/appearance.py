"""Visible signature appearances for the Decree 30/2020 Appendix I profiles (DESIGN.md section 4).

``approved`` shows the leader's signature image, ``issued`` the organisation's seal at its real
size, ``appendix`` and ``copy`` a small serif text stamp at the top right of page 1. The result of
:func:`stamp_style` goes to ``PdfSigner(..., stamp_style=...)`` and ``appearance_text_params``.

Text is set in Liberation Serif (metric-compatible with Times New Roman, free, with Vietnamese
glyphs) through pyHanko's OpenType support. Two traps are handled here rather than in callers:

* Debian's ``fonts-liberation`` (1.07) has no precomposed Vietnamese letters (Ế, Ị, Ủ, ...): they
  silently render as nothing. ``fonts-liberation2`` has them; we check the font's coverage.
* pyHanko 0.38 writes glyph widths (/W), TJ kerning and the font descriptor in font units as if
  every font had 1000 units per em. Liberation has 2048, so text came out twice as wide. We give
  pyHanko a copy of the font rescaled to 1000 units per em (subset to Latin and Vietnamese and
  without hinting, which the rescale would break), built once per process.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo

from fontTools import subset, ttLib  # type: ignore[import-untyped]
from fontTools.ttLib.scaleUpem import scale_upem  # type: ignore[import-untyped]
from pyhanko.pdf_utils import layout
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.stamp import StaticStampStyle, TextStampStyle

from signer.signing.placement import MM, Box, page_box

Profile = Literal["approved", "issued", "appendix", "copy"]
PROFILES: tuple[Profile, ...] = ("approved", "issued", "appendix", "copy")
COPY_FORMS = ("SAO Y", "SAO LỤC", "TRÍCH SAO")
VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
FONT_SIZE = 10  # pt, Decree 30 text stamps
LEADING = 12  # pt between baselines
TEXT_MARGIN_MM = 20.0  # default distance of the text stamp from the top and right page edges
MAX_PNG_BYTES = 2 * 1024 * 1024
MAX_PNG_SIDE = 4096
MAX_LINE_CHARS = 200
SERIF_FONT_PATHS = (
    Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-{style}.ttf"),  # fonts-liberation2
    Path("/usr/share/fonts/truetype/liberation/LiberationSerif-{style}.ttf"),  # fonts-liberation
)
_VIETNAMESE_PROBE = "ẾỊỦỄẠẶỢỮếịủễạặợữĐđƠơƯư"  # letters missing from Liberation 1.x
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A fixed-width sample of the signing time line: Liberation's digits are tabular, so every time
# renders as wide as this one. Used to size boxes before the time is known.
SAMPLE_TIME = "2000-01-01T00:00:00+07:00"
# The stamp's %(ts)s comes from pyHanko's signing time in the signer's local zone: format it
# losslessly (with the offset), then re-read and show it in Vietnam time (see _VnTextStampStyle).
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
# Text boxes: margins (points) keep Vietnamese stacked accents and descenders inside the BBox.
_TEXT_MARGINS = (1, 1, 1, 3)  # left, right, top, bottom


class AppearanceError(ValueError):
    """An appearance input is unusable (bad image, missing text, unknown profile...)."""


class Stamp(NamedTuple):
    """What :func:`stamp_style` returns: the pyHanko style and its ``appearance_text_params``;
    ``lines`` is the text to lay out (the time as :data:`SAMPLE_TIME`), empty for images."""

    style: Any
    text_params: dict[str, str]
    lines: tuple[str, ...] = ()


# --- fonts -----------------------------------------------------------------------------------

@functools.cache
def find_serif_font(style: str = "Regular") -> Path:
    """Path of Liberation Serif with Vietnamese glyphs: the Debian paths, then ``fc-match``."""
    candidates = [Path(str(p).format(style=style)) for p in SERIF_FONT_PATHS]
    without_vietnamese = []
    fallback = _fc_match(style)  # another distribution's layout, through fontconfig
    if fallback is not None and fallback not in candidates:
        candidates.append(fallback)
    for path in candidates:
        if path.is_file():
            if _covers(path, _VIETNAMESE_PROBE):
                return path
            without_vietnamese.append(str(path))
    if without_vietnamese:
        raise AppearanceError(f"Liberation Serif at {', '.join(without_vietnamese)} has no "
                              "Vietnamese letters; install fonts-liberation2")
    raise AppearanceError("Liberation Serif was not found; install fonts-liberation2")


def _fc_match(style: str) -> Path | None:
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        found = subprocess.run([fc_match, "-f", "%{file}", f"Liberation Serif:style={style}"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    # fc-match always answers with *some* font; only a Liberation Serif will do.
    return Path(found) if "liberationserif" in Path(found).name.lower() else None


@functools.cache
def _cmap(path: Path) -> frozenset[int]:
    with ttLib.TTFont(str(path), lazy=True) as tt:
        return frozenset(tt.getBestCmap())


def _covers(path: Path, text: str) -> bool:
    cmap = _cmap(path)
    return all(ord(ch) in cmap for ch in text)


@functools.cache
def serif_font_bytes(style: str = "Regular") -> bytes:
    """Liberation Serif rescaled to 1000 units per em (see the module docstring), cached."""
    path = find_serif_font(style)
    with ttLib.TTFont(str(path)) as tt:
        options = subset.Options()
        options.hinting = False  # instructions are in the old units; drop rather than mis-hint
        options.layout_features = ["*"]
        options.name_IDs = ["*"]
        options.notdef_outline = True
        options.drop_tables += ["FFTM", "DSIG"]
        subsetter = subset.Subsetter(options)
        # Basic Latin to Latin Extended-B, combining marks, Latin Extended Additional (Vietnamese),
        # general punctuation, the dong sign and the numero sign.
        subsetter.populate(unicodes=[*range(0x20, 0x250), *range(0x300, 0x370),
                                     *range(0x1E00, 0x1F00), *range(0x2000, 0x2070), 0x20AB, 0x2116])
        subsetter.subset(tt)
        if tt["head"].unitsPerEm != 1000:
            scale_upem(tt, 1000)
        out = BytesIO()
        tt.save(out)
    return out.getvalue()


@dataclass(frozen=True)
class _SerifFactory(GlyphAccumulatorFactory):  # type: ignore[misc]
    """Serves the rescaled font from memory (pyHanko's own factory also leaves the file open)."""

    style: str = "Regular"

    def create_font_engine(self, writer: Any, obj_stream: Any = None) -> Any:
        if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
            obj_stream = writer.prepare_object_stream()
        return GlyphAccumulator(writer=writer, font_handle=BytesIO(serif_font_bytes(self.style)),
                                font_size=self.font_size, obj_stream=obj_stream)


def serif_font(font_size: int = FONT_SIZE, style: str = "Regular") -> Any:
    """A pyHanko ``GlyphAccumulatorFactory`` for Liberation Serif. Use the same size as the
    ``TextBoxStyle``: pyHanko advances lines at the factory's size (pyHanko issue 733)."""
    path = find_serif_font(style)
    return _SerifFactory(font_file=str(path), font_size=font_size, style=style)


@functools.cache
def _advances() -> tuple[dict[int, int], int, int]:
    with ttLib.TTFont(BytesIO(serif_font_bytes())) as tt:
        hmtx = tt["hmtx"]
        widths = {cp: hmtx[name][0] for cp, name in tt.getBestCmap().items()}
        return widths, hmtx[".notdef"][0], tt["head"].unitsPerEm


def text_width(text: str, font_size: float = FONT_SIZE) -> float:
    """Advance width of one line in points (without kerning, which only narrows Latin text)."""
    widths, notdef, units_per_em = _advances()
    return sum(widths.get(ord(ch), notdef) for ch in text) / units_per_em * font_size


# --- signing time ----------------------------------------------------------------------------

def format_signing_time(when: datetime) -> str:
    """ISO 8601 in Vietnam time with the offset, to the second: ``2026-11-21T14:05:09+07:00``."""
    if when.tzinfo is None:
        raise AppearanceError("the signing time must carry a time zone")
    return when.astimezone(VN_TZ).isoformat(timespec="seconds")


def vn_now() -> datetime:
    """The current time in Vietnam, whole seconds: pin a signing session to it so the stamp,
    /M and the CMS signing-time attribute (all second precision) show the same instant."""
    return datetime.now(VN_TZ).replace(microsecond=0)


@dataclass(frozen=True)
class _VnTextStampStyle(TextStampStyle):  # type: ignore[misc]
    """A text stamp whose ``%(ts)s`` is pyHanko's own signing time shown in Vietnam time.

    pyHanko formats ``ts`` with ``timestamp_format`` from the signing session's ``system_time``
    (local zone of the server unless pinned). ``strftime`` cannot change zones, so we format with
    ``%z`` and convert here, just before the stamp is drawn."""

    def create_stamp(self, writer: Any, box: Any, text_params: dict[str, Any]) -> Any:
        params = dict(text_params)
        if "ts" in params:
            try:
                when = datetime.strptime(params["ts"], _TS_FORMAT)
            except ValueError as exc:  # a naive signing time formats without %z
                raise AppearanceError("the signing time must carry a time zone") from exc
            params["ts"] = format_signing_time(when)
        return super().create_stamp(writer, box, params)


# --- images ----------------------------------------------------------------------------------

def validate_png(data: bytes, *, what: str = "image") -> Any:
    """Decode a signature or seal PNG: at most 2 MB and 4096x4096, with transparent pixels.
    Returns the Pillow image in RGBA."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray) or not data.startswith(_PNG_MAGIC):
        raise AppearanceError(f"the {what} is not a PNG file")
    if len(data) > MAX_PNG_BYTES:
        raise AppearanceError(f"the {what} is larger than {MAX_PNG_BYTES // (1024 * 1024)} MB")
    try:
        img = Image.open(BytesIO(data), formats=["PNG"])
        if img.width > MAX_PNG_SIDE or img.height > MAX_PNG_SIDE:  # checked before decoding
            raise AppearanceError(f"the {what} is {img.width}x{img.height} pixels; "
                                  f"at most {MAX_PNG_SIDE}x{MAX_PNG_SIDE} is allowed")
        img.load()
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        if isinstance(exc, AppearanceError):
            raise
        raise AppearanceError(f"the {what} could not be decoded as a PNG ({exc})") from exc
    has_alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if not has_alpha:
        raise AppearanceError(f"the {what} has no alpha channel; a transparent background is required")
    rgba = img.convert("RGBA")
    lowest_alpha, _ = rgba.getchannel("A").getextrema()
    if lowest_alpha == 255:
        raise AppearanceError(f"the {what} has no transparent pixels; its background would hide "
                              "the document")
    return rgba


def _image_style(image_png: bytes | None, what: str) -> Any:
    if image_png is None:
        raise AppearanceError(f"this profile needs the {what} image")
    image = PdfImage(validate_png(image_png, what=what))
    fit = layout.SimpleBoxLayoutRule(
        x_align=layout.AxisAlignment.ALIGN_MID, y_align=layout.AxisAlignment.ALIGN_MID,
        margins=layout.Margins.uniform(0),
        inner_content_scaling=layout.InnerScaling.STRETCH_TO_FIT)  # keeps the aspect ratio
    return StaticStampStyle(background=image, background_opacity=1.0, background_layout=fit,
                            border_width=0)


# --- text ------------------------------------------------------------------------------------

def _clean_line(value: str | None, what: str) -> str:
    if value is None or not value.strip():
        raise AppearanceError(f"this profile needs the {what}")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if len(text) > MAX_LINE_CHARS:
        raise AppearanceError(f"the {what} is longer than {MAX_LINE_CHARS} characters")
    path = find_serif_font()
    missing = sorted({ch for ch in text if not _covers(path, ch)})
    if missing:
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in missing)
        raise AppearanceError(f"the {what} has characters the stamp font cannot show: {shown}")
    return text


def _text_style(template: str) -> Any:
    left, right, top, bottom = _TEXT_MARGINS
    box_style = TextBoxStyle(
        font=serif_font(FONT_SIZE), font_size=FONT_SIZE, leading=LEADING, text_color=(0, 0, 0),
        border_width=0,
        box_layout_rule=layout.SimpleBoxLayoutRule(
            x_align=layout.AxisAlignment.ALIGN_MIN, y_align=layout.AxisAlignment.ALIGN_MAX,
            margins=layout.Margins(left=left, right=right, top=top, bottom=bottom)))
    # Text sits at the top left of the field box; a box too small shrinks it rather than clip.
    inner = layout.SimpleBoxLayoutRule(
        x_align=layout.AxisAlignment.ALIGN_MIN, y_align=layout.AxisAlignment.ALIGN_MAX,
        margins=layout.Margins.uniform(0), inner_content_scaling=layout.InnerScaling.SHRINK_TO_FIT)
    return _VnTextStampStyle(stamp_text=template, timestamp_format=_TS_FORMAT,
                             text_box_style=box_style, inner_content_layout=inner,
                             border_width=0, background=None)


def stamp_style(profile: str, *, image_png: bytes | None = None, number: str | None = None,
                copy_form: str | None = None, organisation: str | None = None) -> Stamp:
    """The appearance for a profile.

    * ``approved``: ``image_png`` is the leader's signature (blue, transparent), fitted to the box.
    * ``issued``: ``image_png`` is the organisation's seal (red, transparent); use a box from
      :func:`signer.signing.placement.seal_box` so it shows at its real size.
    * ``appendix``: ``number`` (the number/notation line, shown as given, e.g. ``Số: 07/QĐ-UBND``)
      and the signing time.
    * ``copy``: ``copy_form`` (``SAO Y``, ``SAO LỤC`` or ``TRÍCH SAO``), ``organisation`` (the
      copying organisation) and the signing time.

    Text user input goes into the text parameters, never into the template, so a ``%`` in a
    number cannot break the interpolation.
    """
    if profile == "approved":
        return Stamp(_image_style(image_png, "signature"), {})
    if profile == "issued":
        return Stamp(_image_style(image_png, "seal"), {})
    if image_png is not None:
        raise AppearanceError(f"profile {profile!r} shows no image")
    if profile == "appendix":
        line = _clean_line(number, "document number/notation")
        return Stamp(_text_style("%(number)s\n%(ts)s"), {"number": line}, (line, SAMPLE_TIME))
    if profile == "copy":
        form = _clean_line(copy_form, "copy form")
        if form not in COPY_FORMS:
            raise AppearanceError(f"copy form must be one of {', '.join(COPY_FORMS)}")
        org = _clean_line(organisation, "copying organisation")
        return Stamp(_text_style("%(copy_form)s\n%(organisation)s\n%(ts)s"),
                     {"copy_form": form, "organisation": org}, (form, org, SAMPLE_TIME))
    raise AppearanceError(f"unknown profile {profile!r} (expected one of {', '.join(PROFILES)})")


def default_text_box(pdf_bytes: bytes, lines: tuple[str, ...] | list[str], *,
                     margin_mm: float = TEXT_MARGIN_MM) -> tuple[int, Box]:
    """Page 0 and a box just big enough for ``lines`` at the top right of page 1, ``margin_mm``
    from the top and right edges of the visible page area."""
    if not lines:
        raise AppearanceError("no text lines to place")
    left, right, top, bottom = _TEXT_MARGINS
    width = max(text_width(line) for line in lines) + left + right + 1  # +1: pyHanko rounds widths
    height = len(lines) * LEADING + top + bottom
    _, _, px2, py2 = page_box(pdf_bytes, 0)
    x2, y2 = px2 - margin_mm * MM, py2 - margin_mm * MM
    return 0, (x2 - width, y2 - height, x2, y2)
