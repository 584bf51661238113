"""Request bodies with documents: a per-file size limit enforced while the upload streams in."""

from __future__ import annotations

import tempfile
from typing import IO, Any

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge


class _LimitedFile(tempfile.SpooledTemporaryFile):  # type: ignore[type-arg]
    """Spools to disk past 1 MiB and refuses to grow beyond ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(max_size=1 << 20, mode="w+b")
        self._limit, self._written = limit, 0

    def write(self, data: Any) -> int:
        self._written += len(data)
        if self._written > self._limit:
            self.close()  # werkzeug drops the stream on error without closing it
            raise RequestEntityTooLarge(f"a document is larger than {self._limit} bytes")
        return super().write(data)


class SignerRequest(Request):
    """Flask request whose uploaded files are limited individually (``file_limit``)."""

    file_limit: int | None = None

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        if self.file_limit is None:
            return super()._get_file_stream(total_content_length, content_type, filename, content_length)
        return _LimitedFile(self.file_limit)
