"""The catalogue of administrative document types (Decree 30/2020/NĐ-CP, Art. 7 and Appendix III).

Kept as data: one :class:`DocType` row per type, in the decree's order. ``notation`` is the
abbreviation that starts a CodeNotation (``QĐ`` in ``07/QĐ-UBND``); "Công văn" and "Thư công" have
none (their notation starts with the issuing body). Copies (sao y, trích sao, sao lục) have their own
notations. Legal normative documents (Nghị định, Thông tư, ...) follow the law on legal documents
and are not listed; add rows here if needed.

Lookups normalise to Unicode NFC (packets may carry decomposed Vietnamese) and ignore case, which is
unambiguous for this catalogue (``HD`` Hướng dẫn and ``HĐ`` Hợp đồng differ by ``Đ``, not by case).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class DocType:
    """One document type: its notation (may be empty), Vietnamese and English names."""

    notation: str
    name: str  # Vietnamese, as TypeName carries it
    english: str
    copy: bool = False  # a copy form (SY, TrS, SL), not a type of original document


CATALOGUE: tuple[DocType, ...] = (
    DocType("NQ", "Nghị quyết", "Resolution"),
    DocType("QĐ", "Quyết định", "Decision"),
    DocType("CT", "Chỉ thị", "Directive"),
    DocType("QC", "Quy chế", "Regulation"),
    DocType("QyĐ", "Quy định", "Rules"),
    DocType("TC", "Thông cáo", "Communiqué"),
    DocType("TB", "Thông báo", "Notice"),
    DocType("HD", "Hướng dẫn", "Guidance"),
    DocType("CTr", "Chương trình", "Programme"),
    DocType("KH", "Kế hoạch", "Plan"),
    DocType("PA", "Phương án", "Option plan"),
    DocType("ĐA", "Đề án", "Scheme"),
    DocType("DA", "Dự án", "Project"),
    DocType("BC", "Báo cáo", "Report"),
    DocType("BB", "Biên bản", "Minutes"),
    DocType("TTr", "Tờ trình", "Submission"),
    DocType("HĐ", "Hợp đồng", "Contract"),
    DocType("CĐ", "Công điện", "Official telegram"),
    DocType("BGN", "Bản ghi nhớ", "Memorandum of understanding"),
    DocType("BTT", "Bản thỏa thuận", "Agreement"),
    DocType("GUQ", "Giấy ủy quyền", "Power of attorney"),
    DocType("GM", "Giấy mời", "Invitation"),
    DocType("GGT", "Giấy giới thiệu", "Letter of introduction"),
    DocType("GNP", "Giấy nghỉ phép", "Leave permit"),
    DocType("PG", "Phiếu gửi", "Dispatch slip"),
    DocType("PC", "Phiếu chuyển", "Transfer slip"),
    DocType("PB", "Phiếu báo", "Notification slip"),
    DocType("", "Công văn", "Official letter"),
    DocType("", "Thư công", "Public letter"),
    DocType("SY", "Bản sao y", "True copy", copy=True),
    DocType("TrS", "Bản trích sao", "Extract copy", copy=True),
    DocType("SL", "Bản sao lục", "Transcribed copy", copy=True),
)


def _key(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip().casefold()


_BY_NOTATION = {_key(row.notation): row for row in CATALOGUE if row.notation}
_BY_NAME = {_key(row.name): row for row in CATALOGUE}


def by_notation(notation: str) -> DocType | None:
    """The type whose notation is ``notation`` (``"QĐ"``), or ``None``; empty never matches."""
    return _BY_NOTATION.get(_key(notation)) if notation.strip() else None


def by_name(name: str) -> DocType | None:
    """The type whose Vietnamese name is ``name`` (``"Quyết định"``, as in TypeName), or ``None``."""
    return _BY_NAME.get(_key(name))


def for_code_notation(code_notation: str) -> DocType | None:
    """The type a CodeNotation announces: ``"QĐ-UBND"`` -> Quyết định (the part before the first
    ``-``). ``None`` when that part is no known notation, as for a Công văn (``"UBND-VP"``)."""
    return by_notation(code_notation.split("-", 1)[0])
