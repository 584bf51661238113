"""The audit chain: intact when untouched, and any tampering is found and named."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from signer import audit
from signer.cli import main
from signer.services import Services
from signer.settings import Settings
from tests.support import in_threads


def _fill(services: Services, n: int = 5) -> None:
    with services.db.session() as s:
        for i in range(n):
            audit.record(s, actor=f"user:{i}", action="credential.register", target=f"credential:{i}",
                         organisation_id="org", detail={"i": i, "tên": "Nguyễn"})


def _tamper(services: Services, *statements: str, **params: Any) -> None:
    """What an attacker with database access would do: drop the guard, then edit."""
    with services.db.session() as s:
        if services.db.dialect == "postgresql":
            s.execute(text("DROP TRIGGER audit_events_no_change ON audit_events"))
        else:
            s.execute(text("DROP TRIGGER audit_events_no_update"))
            s.execute(text("DROP TRIGGER audit_events_no_delete"))
        for sql in statements:
            s.execute(text(sql), params)


def _verify(services: Services) -> audit.VerifyReport:
    with services.db.session() as s:
        return audit.verify(s)


def test_untouched_chain_verifies(services: Services) -> None:
    _fill(services)
    report = _verify(services)
    assert report.ok and report.checked == 5


@pytest.mark.parametrize(("column", "value"), [
    ("actor", "'user:999'"), ("action", "'nothing.happened'"), ("target", "'x'"),
    ("outcome", "'denied'"), ("organisation_id", "'other'"), ("detail", "'{}'"),
    ("at", "'2020-01-01T00:00:00.000000+00:00'"), ("hash", "'" + "f" * 64 + "'"),
])
def test_changing_any_column_of_a_row_names_that_row(services: Services, column: str, value: str) -> None:
    _fill(services)
    _tamper(services, f"UPDATE audit_events SET {column} = {value} WHERE seq = 3")
    report = _verify(services)
    assert not report.ok
    assert report.broken_seq == 3
    assert "row 3" in report.describe()


def test_deleting_a_middle_row_names_the_missing_row(services: Services) -> None:
    _fill(services)
    _tamper(services, "DELETE FROM audit_events WHERE seq = 2")
    report = _verify(services)
    assert not report.ok and report.broken_seq == 2
    assert "row 2 is missing" in report.describe()


def test_renumbering_a_row_names_it(services: Services) -> None:
    _fill(services)
    _tamper(services, "UPDATE audit_events SET seq = 103 WHERE seq = 3")
    report = _verify(services)
    assert not report.ok and report.broken_seq == 3
    assert "row 3 is missing" in report.describe()


def test_swapping_two_rows_numbers_names_the_first(services: Services) -> None:
    _fill(services)
    _tamper(services, "UPDATE audit_events SET seq = 100 WHERE seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE seq = 4",
            "UPDATE audit_events SET seq = 4 WHERE seq = 100")
    report = _verify(services)
    assert not report.ok and report.broken_seq == 3
    assert "previous-hash link" in report.reason


def test_changing_a_previous_hash_names_that_row(services: Services) -> None:
    _fill(services)
    with services.db.session() as s:
        first = s.scalar(text("SELECT hash FROM audit_events WHERE seq = 1"))
    _tamper(services, "UPDATE audit_events SET prev_hash = :h WHERE seq = 3", h=first)
    report = _verify(services)
    assert not report.ok and report.broken_seq == 3
    assert "previous-hash link" in report.reason and "row 3" in report.describe()


def _forged_row(services: Services, seq: int, prev_seq: int) -> dict[str, Any]:
    """A row whose hash is right for its content and predecessor: only the links can betray it."""
    with services.db.session() as s:
        prev = s.scalar(text("SELECT hash FROM audit_events WHERE seq = :p"), {"p": prev_seq})
    row = {"seq": seq, "at": "2020-01-01T00:00:00.000000+00:00", "actor": "user:evil",
           "action": "credential.register", "target": "credential:x", "outcome": "success",
           "organisation_id": "org", "detail": "{}", "prev_hash": prev}
    return dict(row, hash=audit.row_hash(**row))


INSERT_ROW = ("INSERT INTO audit_events (seq, at, actor, action, target, outcome, organisation_id,"
              " detail, prev_hash, hash) VALUES (:seq, :at, :actor, :action, :target, :outcome,"
              " :organisation_id, :detail, :prev_hash, :hash)")


def test_inserting_a_row_in_the_middle_names_the_row_after_it(services: Services) -> None:
    _fill(services)
    forged = _forged_row(services, 4, prev_seq=3)
    # Make room: shift rows 4 and 5 up (via a high range, so the primary key never collides).
    _tamper(services, "UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 4",
            "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1000", INSERT_ROW, **forged)
    report = _verify(services)
    # The forged row 4 links and hashes; the old row 4, now numbered 5, no longer links to it.
    assert not report.ok and report.broken_seq == 5
    assert "previous-hash link" in report.reason and "row 5" in report.describe()


def test_replacing_a_row_with_a_forged_one_names_it(services: Services) -> None:
    _fill(services)
    forged = dict(_forged_row(services, 0, prev_seq=1), seq=3, hash="e" * 64)
    _tamper(services, "DELETE FROM audit_events WHERE seq = 3", INSERT_ROW, **forged)
    report = _verify(services)
    assert not report.ok and report.broken_seq == 3


def test_appending_a_row_past_the_head_names_it(services: Services) -> None:
    _fill(services)
    _tamper(services, INSERT_ROW, **_forged_row(services, 6, prev_seq=5))
    report = _verify(services)
    assert not report.ok and report.broken_seq == 6
    assert "past the chain head" in report.describe()


def test_deleting_the_last_row_is_found_at_the_head(services: Services) -> None:
    _fill(services)
    _tamper(services, "DELETE FROM audit_events WHERE seq = 5")
    report = _verify(services)
    assert not report.ok and report.broken_seq is None and "head" in report.describe()


def test_cli_audit_verify_fails_and_names_the_row(services: Services, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _fill(services)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "intact: 5 rows" in ok.output
    _tamper(services, "UPDATE audit_events SET detail = '{\"i\": 99}' WHERE seq = 4")
    bad = runner.invoke(main, ["audit", "verify"], env=env)
    assert bad.exit_code == 1
    assert "row 4" in bad.output


def test_concurrent_writers_keep_one_linear_chain(services: Services) -> None:
    def writer(n: int) -> None:
        for i in range(15):
            with services.db.session() as s:
                audit.record(s, actor=f"worker:{n}", action="test", detail={"i": i})

    in_threads(writer, 4)
    report = _verify(services)
    assert report.ok and report.checked == 60


def test_verify_during_concurrent_appends_never_reports_a_break(services: Services) -> None:
    """Rows and head are read in separate statements (READ COMMITTED on PostgreSQL): writers
    committing in between must not look like a broken chain."""
    _fill(services, 3)
    stop = threading.Event()

    def writer(n: int) -> int:
        written = 0
        while not stop.is_set():
            with services.db.session() as s:
                audit.record(s, actor=f"worker:{n}", action="test", detail={"i": written})
            written += 1
        return written

    reports: list[audit.VerifyReport] = []

    def reader() -> None:
        try:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                reports.append(_verify(services))
        finally:
            stop.set()

    verifier = threading.Thread(target=reader)
    verifier.start()
    written = in_threads(writer, 2)
    verifier.join()
    assert sum(written) > 0 and len(reports) > 1
    broken = [r.describe() for r in reports if not r.ok]
    assert broken == []
    final = _verify(services)
    assert final.ok and final.checked == 3 + sum(written)
