"""Read-only sessions: they read while a writer holds its transaction (no queueing behind SQLite's
write lock) and refuse to write."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select, text

from signer.db import ReadOnlySession
from signer.models import Organisation
from signer.services import Services
from tests.conftest import World


def test_readers_do_not_wait_for_a_writer(services: Services, world: World) -> None:
    writing, release = threading.Event(), threading.Event()
    counts: list[int] = []

    def writer() -> None:
        with services.db.session() as s:  # holds SQLite's write lock until release
            org = s.get(Organisation, world.office)
            assert org is not None
            org.name = org.name + " (đổi tên)"
            s.flush()
            writing.set()
            assert release.wait(30)

    def reader() -> None:
        with services.db.session(readonly=True) as s:
            counts.append(s.scalar(select(func.count()).select_from(Organisation)) or 0)

    w = threading.Thread(target=writer)
    w.start()
    assert writing.wait(30)
    r = threading.Thread(target=reader)
    r.start()
    r.join(10)
    finished_while_writing = not r.is_alive()
    release.set()
    w.join(30)
    r.join(30)
    assert finished_while_writing and counts and counts[0] >= 1
    with services.db.session(readonly=True) as s:
        org = s.get(Organisation, world.office)
        assert org is not None and org.name.endswith("(đổi tên)")  # the writer committed afterwards


def test_read_only_sessions_refuse_writes(services: Services, world: World) -> None:
    def rename() -> None:
        with services.db.session(readonly=True) as s:
            org = s.get(Organisation, world.office)
            assert org is not None
            org.name = "không được ghi"

    with pytest.raises(ReadOnlySession):
        rename()
    if services.db.dialect == "postgresql":  # and the database itself refuses, not only the ORM
        with pytest.raises(Exception, match="read-only"), services.db.session(readonly=True) as s:
            s.execute(text("UPDATE organisations SET name = 'x'"))
    with services.db.session(readonly=True) as s:
        org = s.get(Organisation, world.office)
        assert org is not None and org.name != "không được ghi"
