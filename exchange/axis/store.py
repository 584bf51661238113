"""Persistence of the local axis: packets and their per-recipient deliveries in one SQLite file.

One connection guarded by a lock serves every thread of the (threaded) WSGI server: the local axis
is light, and a lock avoids one connection per short-lived request thread. WAL keeps readers in
other processes (a second server on the same file, a debugging shell) out of the writer's way.
Times are stored as ISO-8601 UTC strings so they sort; the API renders them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

PENDING = "pending"
# Statuses a recipient may set through updateStatus; done and fail take a packet off its list.
RECIPIENT_STATUSES = frozenset({"done", "fail", "processing"})
OPEN_STATUSES = (PENDING, "processing")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    doc_id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    message_type TEXT NOT NULL,
    edxml BLOB NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    doc_id TEXT NOT NULL REFERENCES packets(doc_id),
    recipient TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'fail', 'processing')),
    status_desc TEXT NOT NULL DEFAULT '',
    updated TEXT NOT NULL,
    PRIMARY KEY (doc_id, recipient)
);
CREATE INDEX IF NOT EXISTS deliveries_by_recipient ON deliveries(recipient, status);
"""

_SELECT = (
    "SELECT d.doc_id, p.sender, d.recipient, p.message_type, d.status, d.status_desc, p.created, d.updated"
    " FROM deliveries d JOIN packets p ON p.doc_id = d.doc_id"
)


@dataclass(frozen=True)
class StoredPacket:
    doc_id: str
    sender: str
    message_type: str
    edxml: bytes
    created: datetime


@dataclass(frozen=True)
class Delivery:
    """One recipient's copy of a packet, joined with the packet's metadata."""

    doc_id: str
    sender: str
    recipient: str
    message_type: str
    status: str
    status_desc: str
    created: datetime
    updated: datetime


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


class Store:
    """The axis's packets and deliveries. Safe to share between threads; ``close()`` when done."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add_packet(
        self, doc_id: str, *, sender: str, message_type: str, edxml: bytes, recipients: Collection[str],
        now: datetime,
    ) -> None:
        """Store a packet and one pending delivery per recipient, atomically."""
        stamp = _iso(now)
        with self._transaction() as db:
            db.execute("INSERT INTO packets VALUES (?, ?, ?, ?, ?)", (doc_id, sender, message_type, edxml, stamp))
            db.executemany(
                "INSERT INTO deliveries VALUES (?, ?, ?, '', ?)",
                [(doc_id, r, PENDING, stamp) for r in recipients],
            )

    def packet(self, doc_id: str) -> StoredPacket | None:
        """The stored packet ``doc_id``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT doc_id, sender, message_type, edxml, created FROM packets WHERE doc_id = ?", (doc_id,)
            ).fetchone()
        if row is None:
            return None
        return StoredPacket(row[0], row[1], row[2], bytes(row[3]), _dt(row[4]))

    def _deliveries(self, where: str, args: tuple[object, ...]) -> list[Delivery]:
        # ``where`` is always one of this module's literals with ``?`` marks: values never enter the SQL.
        query = f"{_SELECT} WHERE {where} ORDER BY p.created, d.doc_id, d.recipient"
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [Delivery(r[0], r[1], r[2], r[3], r[4], r[5], _dt(r[6]), _dt(r[7])) for r in rows]

    def waiting(self, recipients: Collection[str], message_type: str) -> list[Delivery]:
        """Deliveries to any of ``recipients`` of this message type not yet done or failed."""
        if not recipients:
            return []
        marks = ",".join("?" * len(recipients))
        return self._deliveries(
            f"d.recipient IN ({marks}) AND p.message_type = ? AND d.status IN (?, ?)",
            (*recipients, message_type, *OPEN_STATUSES),
        )

    def deliveries(self, doc_id: str) -> list[Delivery]:
        """Every recipient's delivery of packet ``doc_id``."""
        return self._deliveries("d.doc_id = ?", (doc_id,))

    def set_status(
        self, doc_id: str, recipients: Collection[str], status: str, status_desc: str, *, now: datetime
    ) -> int:
        """Set the status of ``doc_id``'s deliveries to ``recipients``; return how many rows changed."""
        if status not in RECIPIENT_STATUSES:
            raise ValueError(f"unknown delivery status {status!r}")
        if not recipients:
            return 0
        marks = ",".join("?" * len(recipients))
        with self._transaction() as db:
            cursor = db.execute(
                f"UPDATE deliveries SET status = ?, status_desc = ?, updated = ?"  # noqa: S608 - only marks
                f" WHERE doc_id = ? AND recipient IN ({marks})",
                (status, status_desc, _iso(now), doc_id, *recipients),
            )
            return cursor.rowcount

    def count_packets(self) -> int:
        """How many packets are stored (for tests and the demo)."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM packets").fetchone()
        return int(count)
