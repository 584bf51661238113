"""Attachments: the signed PDF we send, and the files we take out of what others send.

We send signed PDFs as raw bytes (``application/pdf``, lower-case ``.pdf``): zipping would hide the
PAdES signatures from receivers that do not unzip. Other senders zip files of other types as
``application/zip`` under the inner file's name; :func:`unpack` opens those, with limits against zip
bombs and path tricks.
"""

from __future__ import annotations

import contextlib
import io
import mimetypes
import posixpath
import zipfile
import zlib
from dataclasses import dataclass, field

from exchange.edxml.model import Attachment
from exchange.errors import PacketError

PDF_CONTENT_TYPE = "application/pdf"
ZIP_CONTENT_TYPES = frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"})
ZIP_MAGIC = b"PK\x03\x04"
MAX_MEMBERS = 100
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
_CHUNK = 1024 * 1024
_UTF8_NAMES = 0x800  # general purpose flag bit 11: the member name is UTF-8


@dataclass(frozen=True)
class File:
    """One file for the clerk: a member of an unpacked zip, or the attachment itself."""

    name: str
    content_type: str
    data: bytes = field(repr=False)


def pdf_attachment(content_id: str, name: str, data: bytes, description: str = "") -> Attachment:
    """An ``application/pdf`` attachment of ``data`` as is. ``name`` gets a lower-case ``.pdf``
    extension (``"QD 07.PDF"`` -> ``"QD 07.pdf"``; appended when missing). Raises
    :class:`PacketError` (``invalid-value``) for an empty id or name, a name with a path separator, or
    data that does not start with ``%PDF-``."""
    if not content_id.strip():
        raise PacketError("invalid-value", "attachment content id is empty")
    stem = name.strip()
    if stem.lower().endswith(".pdf"):
        stem = stem[:-4]
    if not stem or "/" in name or "\\" in name:
        raise PacketError("invalid-value", f"attachment name {name!r} is empty or contains a path separator")
    if not data.startswith(b"%PDF-"):
        raise PacketError("invalid-value", f"attachment {name!r} is not a PDF (no %PDF- header)")
    return Attachment(content_id, f"{stem}.pdf", PDF_CONTENT_TYPE, data, description)


def _guess_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def _member_name(info: zipfile.ZipInfo) -> str:
    """The member's relative path, refusing absolute paths and ``..`` (zip slip)."""
    name = info.filename
    if not info.flag_bits & _UTF8_NAMES:
        # zipfile decoded the name as CP437; Vietnamese tools often write UTF-8 without the flag.
        with contextlib.suppress(UnicodeError):
            name = name.encode("cp437").decode("utf-8")
    name = name.replace("\\", "/")
    parts = name.split("/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts or "\x00" in name:
        raise PacketError("invalid-value", f"zip member {info.filename!r} has an unsafe path")
    return posixpath.normpath(name)


def _is_office_container(archive: zipfile.ZipFile) -> bool:
    # OOXML (.docx, .xlsx, ...) and ODF files are zips themselves: deliver them whole.
    names = archive.namelist()
    return "[Content_Types].xml" in names or (bool(names) and names[0] == "mimetype")


def _unzip(attachment: Attachment, max_members: int, max_bytes: int) -> list[File] | None:
    """The files inside, or ``None`` when the archive is itself an office document."""
    with zipfile.ZipFile(io.BytesIO(attachment.data)) as archive:
        infos = archive.infolist()
        if len(infos) > max_members:
            raise PacketError("too-large", f"zip {attachment.name!r} has {len(infos)} members, "
                                           f"more than {max_members}")
        if _is_office_container(archive):
            return None
        files: list[File] = []
        total = 0
        for info in infos:
            name = _member_name(info)
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                raise PacketError("invalid-value", f"zip member {info.filename!r} is encrypted")
            # Count what is actually inflated, not what the headers claim.
            chunks: list[bytes] = []
            with archive.open(info) as member:
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > max_bytes:
                        raise PacketError("too-large", f"zip {attachment.name!r} unpacks to more than "
                                                       f"{max_bytes} bytes")
                    chunks.append(chunk)
            files.append(File(name, _guess_type(name), b"".join(chunks)))
        return files


def unpack(attachment: Attachment, *, max_members: int = MAX_MEMBERS,
           max_bytes: int = MAX_UNPACKED_BYTES) -> list[File]:
    """The files an attachment carries.

    Unzipped when the ContentType is a zip type, or the data starts with ``PK\\x03\\x04`` (defensive
    sniff), and the name does not end in ``.zip`` (a real zip file is delivered as such). An archive
    that is itself an office document (docx, xlsx, odt...) and data labelled zip that is not one are
    delivered whole. Raises :class:`PacketError`: ``too-large`` beyond ``max_members`` members or
    ``max_bytes`` unpacked, ``invalid-value`` for a corrupt or encrypted archive or an unsafe member
    path (absolute, ``..``).
    """
    whole = [File(attachment.name, attachment.content_type, attachment.data)]
    named_zip = attachment.name.lower().endswith(".zip")
    labelled_zip = attachment.content_type.split(";")[0].strip().lower() in ZIP_CONTENT_TYPES
    looks_zip = attachment.data.startswith(ZIP_MAGIC)
    if named_zip or not (labelled_zip or looks_zip):
        return whole
    if not looks_zip and not attachment.data.startswith(b"PK\x05\x06"):  # not even an empty archive
        return [File(attachment.name, _guess_type(attachment.name), attachment.data)]
    try:
        files = _unzip(attachment, max_members, max_bytes)
    except PacketError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError,
            OSError) as exc:
        if not labelled_zip:  # only sniffed: some other format that happens to start with PK
            return whole
        raise PacketError("invalid-value", f"attachment {attachment.name!r} is not a readable zip: {exc}") from exc
    if files is None:
        return [File(attachment.name, _guess_type(attachment.name), attachment.data)]
    return files
