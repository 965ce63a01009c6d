"""The test databases themselves: both backends must really be there (never skipped)."""

import sqlalchemy as sa


def test_backend_is_reachable_and_empty(db_url):
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select 1")).scalar() == 1
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def test_migrations_build_exactly_the_declared_tables(db_url):
    """The Alembic chain and ``_schema.metadata`` must never drift apart (a new column added to
    one and forgotten in the other would only show on a customer's upgraded database)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from estateflow.engine._db import connect, upgrade_schema
    from estateflow.engine._schema import SCHEMA_REVISION, metadata

    engine = connect(db_url)
    try:
        assert upgrade_schema(engine) == SCHEMA_REVISION
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
