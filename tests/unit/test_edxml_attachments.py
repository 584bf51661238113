"""pdf_attachment and unpack: the zip rules, zip slip and bomb limits."""

from __future__ import annotations

import io
import zipfile

import pytest

from exchange.edxml import Attachment, File, pdf_attachment, unpack
from exchange.errors import PacketError

PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"


def zipped(*members: tuple[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _error(attachment: Attachment, **limits: int) -> PacketError:
    with pytest.raises(PacketError) as info:
        unpack(attachment, **limits)
    return info.value


# ---- pdf_attachment ----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("QĐ 07.pdf", "QĐ 07.pdf"), ("QD 07.PDF", "QD 07.pdf"), ("Quyết định", "Quyết định.pdf"), (" a.Pdf ", "a.pdf"),
])
def test_pdf_attachment(name: str, expected: str) -> None:
    attachment = pdf_attachment("1", name, PDF, "Bản ký số")
    assert attachment == Attachment("1", expected, "application/pdf", PDF, "Bản ký số")


@pytest.mark.parametrize(("content_id", "name", "data", "message"), [
    ("1", "a.pdf", b"PK\x03\x04", "not a PDF"),
    ("1", "a.pdf", b"", "not a PDF"),
    ("1", ".pdf", PDF, "empty"),
    ("1", "", PDF, "empty"),
    ("1", "../a.pdf", PDF, "path separator"),
    ("1", "dir\\a.pdf", PDF, "path separator"),
    (" ", "a.pdf", PDF, "content id"),
])
def test_pdf_attachment_refuses(content_id: str, name: str, data: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message) as info:
        pdf_attachment(content_id, name, data)
    assert info.value.code == "invalid-value"


# ---- unpack: when to unzip ---------------------------------------------------------------------

DOC = b"\xd0\xcf\x11\xe0 a word document"


def test_zip_labelled_under_the_inner_name_is_unzipped() -> None:
    files = unpack(Attachment("1", "QĐ.doc", "application/zip", zipped(("QĐ.doc", DOC), ("phu luc/b.txt", b"b"))))
    assert files == [File("QĐ.doc", "application/msword", DOC), File("phu luc/b.txt", "text/plain", b"b")]


def test_a_real_zip_file_is_delivered_whole() -> None:
    data = zipped(("a.doc", DOC))
    assert unpack(Attachment("1", "Hồ sơ.ZIP", "application/zip", data)) == [File("Hồ sơ.ZIP", "application/zip", data)]


def test_sniffed_zip_is_unzipped() -> None:
    data = zipped(("a.doc", DOC))
    assert unpack(Attachment("1", "a.doc", "application/octet-stream", data)) == [
        File("a.doc", "application/msword", DOC)]


def test_other_files_are_delivered_whole() -> None:
    assert unpack(Attachment("1", "a.pdf", "application/pdf", PDF)) == [File("a.pdf", "application/pdf", PDF)]


def test_office_documents_are_zips_but_delivered_whole() -> None:
    docx = zipped(("[Content_Types].xml", b"<Types/>"), ("word/document.xml", b"<w:document/>"))
    for content_type in ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "application/zip"):
        [file] = unpack(Attachment("1", "a.docx", content_type, docx))
        assert file.name == "a.docx" and file.data == docx
    odt = zipped(("mimetype", b"application/vnd.oasis.opendocument.text"), ("content.xml", b"<x/>"))
    assert unpack(Attachment("1", "a.odt", "application/octet-stream", odt))[0].data == odt


def test_labelled_zip_that_is_not_one() -> None:
    assert unpack(Attachment("1", "a.pdf", "application/zip", PDF)) == [File("a.pdf", "application/pdf", PDF)]
    corrupt = b"PK\x03\x04" + b"\x00" * 40
    assert _error(Attachment("1", "a.doc", "application/zip", corrupt)).code == "invalid-value"
    # Merely sniffed: some other format that starts with PK, delivered as is.
    assert unpack(Attachment("1", "a.bin", "application/octet-stream", corrupt))[0].data == corrupt


def test_directories_are_skipped_and_empty_archives_give_nothing() -> None:
    data = zipped(("folder/", b""), ("folder/a.txt", b"a"))
    assert [f.name for f in unpack(Attachment("1", "x", "application/zip", data))] == ["folder/a.txt"]
    assert unpack(Attachment("1", "x", "application/zip", zipped())) == []


# ---- unpack: hostile archives ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["../evil.doc", "a/../../evil.doc", "/etc/passwd", "C:\\evil.doc",
                                  "..\\evil.doc", "a\\..\\..\\evil.doc"])
def test_zip_slip_is_refused(name: str) -> None:
    error = _error(Attachment("1", "a.doc", "application/zip", zipped(("ok.txt", b"x"), (name, b"x"))))
    assert error.code == "invalid-value" and "unsafe path" in str(error)


def test_too_many_members() -> None:
    data = zipped(*[(f"{i}.txt", b"x") for i in range(101)])
    assert _error(Attachment("1", "a.doc", "application/zip", data)).code == "too-large"
    assert len(unpack(Attachment("1", "a.doc", "application/zip", data), max_members=101)) == 101
    two = Attachment("1", "a.doc", "application/zip", zipped(("a", b""), ("b", b"")))
    assert _error(two, max_members=1).code == "too-large"


def test_bomb_is_stopped_by_the_inflated_size() -> None:
    bomb = zipped(("a.txt", b"\0" * (3 * 1024 * 1024)), ("b.txt", b"\0" * (3 * 1024 * 1024)))
    assert len(bomb) < 20_000
    error = _error(Attachment("1", "a.doc", "application/zip", bomb), max_bytes=5 * 1024 * 1024)
    assert error.code == "too-large"
    assert len(unpack(Attachment("1", "a.doc", "application/zip", bomb), max_bytes=6 * 1024 * 1024)) == 2


def test_lying_size_headers_do_not_help() -> None:
    # Declared sizes patched down to 1 byte: zipfile notices the mismatch instead of over-reading.
    data = bytearray(zipped(("a.txt", b"\0" * 100_000)))
    central = data.rindex(b"PK\x01\x02")
    data[22:26] = (1).to_bytes(4, "little")  # local header: uncompressed size
    data[central + 24:central + 28] = (1).to_bytes(4, "little")  # central directory: uncompressed size
    assert _error(Attachment("1", "a.doc", "application/zip", bytes(data))).code == "invalid-value"


def test_encrypted_members_are_refused() -> None:
    data = bytearray(zipped(("a.txt", b"secret"), compression=zipfile.ZIP_STORED))
    central = data.rindex(b"PK\x01\x02")
    data[6] |= 1  # local header flag bits: encrypted
    data[central + 8] |= 1  # central directory flag bits
    error = _error(Attachment("1", "a.doc", "application/zip", bytes(data)))
    assert error.code == "invalid-value" and "encrypted" in str(error)


def test_utf8_names_without_the_flag_are_recovered() -> None:
    data = bytearray(zipped(("Quyết định.doc", DOC)))
    central = data.rindex(b"PK\x01\x02")
    data[7] &= ~0x08  # clear bit 11 (0x800) in the local header flags
    data[central + 9] &= ~0x08  # and in the central directory
    [file] = unpack(Attachment("1", "Quyết định.doc", "application/zip", bytes(data)))
    assert file.name == "Quyết định.doc"
