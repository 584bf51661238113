"""Blob store for document bytes (originals, prepared and signed PDFs), behind an interface.

The database holds only keys and digests; the bytes live here. The filesystem implementation
writes atomically (temporary file, fsync, rename) so a crash never leaves a half-written blob that
a later reader would take for a document.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"[a-z0-9]{1,16}-[0-9a-f]{32}|[0-9a-f]{32}")


class BlobNotFound(KeyError):
    """No blob under that key."""


class BlobStore(Protocol):
    """Where document bytes live. Keys are opaque strings chosen by the store."""

    def put(self, data: bytes, *, prefix: str = "") -> str: ...

    def get(self, key: str) -> bytes: ...

    def delete(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


class FilesystemBlobStore:
    """Blobs as files under one folder, fanned out by the first bytes of a random key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):  # keys come from the database, but never trust a path
            raise BlobNotFound(key)
        return self.root / key[-2:] / key

    def put(self, data: bytes, *, prefix: str = "") -> str:
        key = f"{prefix}-{secrets.token_hex(16)}" if prefix else secrets.token_hex(16)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return key

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, BlobNotFound):
            self._path(key).unlink()

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).exists()
        except BlobNotFound:
            return False


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
