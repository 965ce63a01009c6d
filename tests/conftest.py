"""Shared fixtures: every storage test runs against real SQLite and real PostgreSQL.

``db_url`` is parametrized over both backends, after APScheduler's one contract suite run
against every data store. Each test gets a fresh, empty database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests import pgserver

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a database on a PostgreSQL server we may create databases on."""
    given = os.environ.get("ESTATEFLOW_TEST_PG_URL")
    if given:
        yield given
        return
    server = pgserver.start()
    try:
        yield server.url("postgres")
    finally:
        server.stop()


def _new_pg_database(admin_url: str) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"ef_{uuid.uuid4().hex[:12]}"
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_pg_database(admin_url: str, url: str) -> None:
    """Drop a test's database (connections a test left open are closed by FORCE)."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    conninfo = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:  # e.g. a test that stopped the server; the cluster goes at session end
        pass


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped after the test."""
    url = _new_pg_database(pg_admin_url)
    yield url
    _drop_pg_database(pg_admin_url, url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh, empty SQLite database file."""
    return f"sqlite:///{tmp_path / 'estateflow.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request) -> str:
    """A fresh, empty database on each backend in turn."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("pg_url")
