"""The document-type catalogue of Decree 30/2020."""

from __future__ import annotations

import unicodedata

import pytest

from exchange import doctypes


def test_catalogue_is_consistent() -> None:
    notations = [row.notation for row in doctypes.CATALOGUE if row.notation]
    assert len(notations) == len({n.casefold() for n in notations}) == 30
    names = [row.name for row in doctypes.CATALOGUE]
    assert len(names) == len(set(names))
    assert all(unicodedata.is_normalized("NFC", row.name + row.notation) for row in doctypes.CATALOGUE)
    assert {row.notation for row in doctypes.CATALOGUE if row.copy} == {"SY", "TrS", "SL"}
    assert {row.name for row in doctypes.CATALOGUE if not row.notation} == {"Công văn", "Thư công"}


@pytest.mark.parametrize(("notation", "name"), [
    ("QĐ", "Quyết định"), ("qđ", "Quyết định"), ("QyĐ", "Quy định"), ("HD", "Hướng dẫn"), ("HĐ", "Hợp đồng"),
    ("CT", "Chỉ thị"), ("CTr", "Chương trình"), ("TTr", "Tờ trình"), ("TrS", "Bản trích sao"), (" NQ ", "Nghị quyết"),
    (unicodedata.normalize("NFD", "ĐA"), "Đề án"),
])
def test_by_notation(notation: str, name: str) -> None:
    row = doctypes.by_notation(notation)
    assert row is not None and row.name == name


@pytest.mark.parametrize("notation", ["", " ", "QD", "UBND", "NĐ"])
def test_unknown_notations(notation: str) -> None:
    assert doctypes.by_notation(notation) is None


def test_by_name() -> None:
    row = doctypes.by_name("Quyết định")
    assert row is not None and (row.notation, row.english) == ("QĐ", "Decision")
    assert doctypes.by_name(unicodedata.normalize("NFD", " công văn ")) == doctypes.DocType("", "Công văn",
                                                                                          "Official letter")
    assert doctypes.by_name("Nghị định") is None


@pytest.mark.parametrize(("code_notation", "notation"), [
    ("QĐ-UBND", "QĐ"), ("KH-UBND", "KH"), ("TB-VPCP", "TB"), ("SY-UBND", "SY"), ("BC", "BC"),
    ("UBND-VP", None), ("VPCP-TTĐT", None), ("", None), ("-UBND", None),
])
def test_for_code_notation(code_notation: str, notation: str | None) -> None:
    row = doctypes.for_code_notation(code_notation)
    assert (row.notation if row else None) == notation
