"""Alembic environment: migrations run from :func:`signer.migrate.upgrade`, never at import."""

from __future__ import annotations

from alembic import context

import signer.interchange.models  # registers the exchange tables on Base.metadata
import signer.lifecycle.models  # registers the lifecycle tables on Base.metadata
import signer.signing.models  # noqa: F401 - registers the signing tables on Base.metadata
from signer.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through signer.migrate
    raise RuntimeError("run migrations with `signer db upgrade`")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
