"""Database engine settings that protect secrets."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from signer.db import make_engine

SECRET = "sk-hash-4f1c0ffee-should-never-be-logged"


def test_bound_parameters_stay_out_of_errors_and_logs(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}", echo=True)
    try:
        assert engine.hide_parameters
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY)"))
            conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": SECRET})
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
        with pytest.raises(IntegrityError) as failure, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:k)"), {"k": SECRET})
    finally:
        engine.dispose()
    assert "UNIQUE" in str(failure.value)
    assert SECRET not in str(failure.value)
    assert SECRET not in caplog.text
    assert "INSERT INTO t" in caplog.text  # the statement is logged, its values are not
