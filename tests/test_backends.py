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
