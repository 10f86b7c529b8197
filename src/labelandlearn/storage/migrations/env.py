"""Alembic environment: runs on the connection that ``upgrade_schema`` passes in."""

from __future__ import annotations

from alembic import context

from labelandlearn.storage.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run migrations through labelandlearn.storage.db.upgrade_schema "
        "or the 'labelandlearn db upgrade' command"
    )

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
