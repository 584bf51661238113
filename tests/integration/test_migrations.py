"""The same migrations on SQLite and PostgreSQL, matching the models, and append-only audit rows."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from signer import audit, migrate
from signer.models import Base
from signer.services import Services


def test_schema_matches_models(services: Services) -> None:
    with services.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert not migrate.pending(services.db.engine)


def test_downgrade_and_upgrade_again(services: Services) -> None:
    migrate.downgrade(services.db.engine, "base")
    assert migrate.pending(services.db.engine)
    migrate.upgrade(services.db.engine)
    migrate.upgrade(services.db.engine)  # idempotent
    with services.db.session() as s:
        audit.record(s, actor="system", action="test")
    with services.db.session() as s:
        assert audit.verify(s).ok


@pytest.mark.parametrize("statement", [
    "UPDATE audit_events SET actor = 'someone-else'",
    "DELETE FROM audit_events",
])
def test_database_refuses_to_change_audit_rows(services: Services, statement: str) -> None:
    with services.db.session() as s:
        audit.record(s, actor="system", action="test")
    with pytest.raises(DBAPIError, match="append-only"), services.db.session() as s:
        s.execute(text(statement))
    with services.db.session() as s:
        assert audit.verify(s).ok
