"""Connecting to the database and guarding its schema.

Why so strict: cron runs ``estateflow tick`` from another working directory, where a relative
``sqlite:///estateflow.db`` would silently create an empty database and every deadline would
pass unnoticed. Only the explicit set-up paths (``init``, ``demo``, ``db upgrade``,
``Engine(create=True)``) create or migrate; everything else refuses, naming the absolute path
or URL it tried.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from ._errors import SchemaError, StorageError
from ._schema import SCHEMA_REVISION

__all__ = ["connect", "describe_url", "normalise_url", "upgrade_schema", "check_schema", "sqlite_path"]

log = logging.getLogger(__name__)
_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def normalise_url(url: str | URL) -> URL:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "sqlite" and parsed.database and parsed.database != ":memory:" \
            and not parsed.database.startswith("file:"):
        parsed = parsed.set(database=os.path.abspath(parsed.database))
    return parsed


def sqlite_path(database: str) -> str:
    """The file behind a SQLite database name, also for ``file:...?mode=ro`` URI names."""
    if database.startswith("file:"):
        from urllib.parse import unquote, urlsplit

        return unquote(urlsplit(database).path)
    return database


def describe_url(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    return f"database {url.render_as_string(hide_password=True)}"


def connect(url: str | URL, *, sqlite_synchronous: str = "NORMAL", echo: bool = False) -> sa.Engine:
    """A SQLAlchemy engine with the pragmas and pool this workload needs."""
    parsed = normalise_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            kwargs["poolclass"] = sa.pool.StaticPool
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        engine = sa.create_engine(parsed, **kwargs)
        _sqlite_pragmas(engine, sqlite_synchronous)
        _storage_errors(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise SchemaError(describe_url(parsed),
                              "PostgreSQL needs the psycopg driver: pip install 'estateflow[postgres]'") from None
        kwargs.update(pool_pre_ping=True, pool_size=5, max_overflow=10)
    engine = sa.create_engine(parsed, **kwargs)
    _storage_errors(engine)
    return engine


def _storage_errors(engine: sa.Engine) -> None:
    """Raise :class:`StorageError` naming the database instead of the driver's OperationalError.

    Why here: a full disk, a read-only file or a server that went away can surface from any
    statement of any call; translating at the connection keeps every caller (API, command
    line, daemon) on one clear error. SQLAlchemy still invalidates a disconnected connection
    before the new error propagates, and a failed pre-ping is left alone so the pool can
    reconnect.
    """
    where = describe_url(engine.url)

    @sa.event.listens_for(engine, "handle_error")
    def _translate(ctx: Any) -> None:
        if ctx.is_pre_ping or not isinstance(ctx.sqlalchemy_exception, sa.exc.OperationalError):
            return
        reason = " ".join(str(ctx.original_exception).split()) or type(ctx.original_exception).__name__
        raise StorageError(where, reason)


def _sqlite_pragmas(engine: sa.Engine, synchronous: str) -> None:
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError(f"sqlite synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN; we issue BEGIN IMMEDIATE
        # ourselves so a read-then-write transaction takes the write lock up front.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal" and engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        readonly = conn.get_execution_options().get("estateflow_readonly")
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _current_revision(conn: sa.Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def check_schema(engine: sa.Engine) -> None:
    """Refuse a missing file, an empty database or a schema this code does not speak."""
    url = engine.url
    where = describe_url(url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not os.path.exists(sqlite_path(url.database)):
        raise SchemaError(where, "no such file; create it with 'estateflow init' "
                                 "(or Engine(url, create=True))")
    with engine.connect() as conn:
        revision = _current_revision(conn)
    if revision is None:
        raise SchemaError(where, "database is empty (no estateflow schema); create it with "
                                 "'estateflow init' or 'estateflow db upgrade'")
    if revision != SCHEMA_REVISION:
        newer = revision > SCHEMA_REVISION
        raise SchemaError(where, f"schema revision {revision} is {'newer' if newer else 'older'} than "
                                 f"this code's {SCHEMA_REVISION}; "
                                 + ("upgrade estateflow" if newer else "run 'estateflow db upgrade'"))


def upgrade_schema(engine: sa.Engine) -> str:
    """Create or migrate the schema to this code's head; serialised across processes."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext('estateflow-schema'))"))
            conn.commit()
        try:
            revision = _current_revision(conn)
            conn.commit()
            if revision is not None and revision > SCHEMA_REVISION:
                raise SchemaError(describe_url(engine.url),
                                  f"schema revision {revision} is newer than this code's {SCHEMA_REVISION}")
            if revision != SCHEMA_REVISION:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
                log.info("schema of %s upgraded from %s to %s", describe_url(engine.url),
                         revision, SCHEMA_REVISION)
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext('estateflow-schema'))"))
                conn.commit()
    return SCHEMA_REVISION
