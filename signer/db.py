"""Database engine and sessions (SQLAlchemy 2). SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url`` with the per-dialect settings the service relies on.

    Bound parameters (password and key hashes, sealed secrets, document digests) never appear in
    exception messages or SQL logs: ``hide_parameters``.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions lazily and DEFERRED; two writers
    # could then both read the audit chain head. Take the write lock at BEGIN instead, and use WAL
    # so readers in other processes are not blocked by it.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Read-only sessions (Database.session(readonly=True)) begin DEFERRED: in WAL mode they read
        # a snapshot without the write lock, so polls and downloads never queue behind a writer.
        mode = "DEFERRED" if conn.get_execution_options().get(_READONLY) else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")


_READONLY = "signer_readonly"


class ReadOnlySession(Exception):
    """A read-only session tried to write."""


@event.listens_for(Session, "before_flush")
def _refuse_writes(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(_READONLY) and (session.new or session.dirty or session.deleted):
        raise ReadOnlySession("a read-only session tried to write")


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once ``session`` commits (e.g. enqueue a job for rows it just wrote)."""
    session.info.setdefault("after_commit", []).append(action)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for action in session.info.pop("after_commit", []):
        try:
            action()
        except Exception:  # committed work is safe; sweepers redo what the action missed
            logging.getLogger(__name__).exception("post-commit action failed")


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop("after_commit", None)


class Database:
    """An engine plus a session factory; :meth:`session` is a unit of work."""

    def __init__(self, url: str, session_info: dict[str, Any] | None = None, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        # Shared, read-only context every session carries (e.g. the job dispatcher).
        self.session_info = session_info if session_info is not None else {}
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        reader = self.engine.execution_options(**{_READONLY: True, "postgresql_readonly": True})
        self._reader_factory = sessionmaker(reader, expire_on_commit=False)

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """Commit on success, roll back on any exception.

        ``readonly``: for reads only (authentication, views, polls, downloads). On SQLite it does
        not take the write lock; on PostgreSQL the transaction is READ ONLY; ORM writes raise
        :class:`ReadOnlySession` on both.
        """
        session = (self._reader_factory if readonly else self._factory)()
        session.info.update(self.session_info)
        if readonly:
            session.info[_READONLY] = True
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name
