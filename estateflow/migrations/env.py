"""Alembic environment: runs on the connection estateflow hands it (never reads alembic.ini)."""

from alembic import context

from estateflow.engine._schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True,
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
