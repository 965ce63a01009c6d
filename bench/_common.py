"""Shared helpers for the benchmarks in bench/: arguments, repeats, tables, databases.

Every script prints each figure beside a peer or ceiling measured in the same run, as a ratio,
and every figure is the median of at least three repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python3 bench/x.py` puts bench/ first, not the repo
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

SH = ZoneInfo("Asia/Shanghai")
TICKET_YAML = ROOT / "tests" / "data" / "workflows" / "ticket.yaml"


# -- arguments and repeats ---------------------------------------------------------------------
def parse_args(description: str, add: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller sizes (the run_all default)")
    size.add_argument("--full", action="store_true", help="the largest sizes")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per figure (median; >= 3)")
    if add:
        add(parser)
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (figures are medians)")
    return args


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float]) -> str:
    """min..max of the repeats, to show how noisy a median is."""
    return f"{min(values):,.0f}..{max(values):,.0f}" if max(values) >= 100 else f"{min(values):.3g}..{max(values):.3g}"


# -- output --------------------------------------------------------------------------------------
@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append([str(c) for c in cells])

    def print(self) -> None:
        widths = [max(len(str(c)) for c in col) for col in zip(self.columns, *self.rows)]
        print(f"\n## {self.title}")
        print("| " + " | ".join(c.ljust(w) for c, w in zip(self.columns, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in self.rows:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")
        sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def note(text: str) -> None:
    print(text, flush=True)


# -- databases -----------------------------------------------------------------------------------
@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Postgres:
    """A throwaway server from tests/pgserver.py (or ESTATEFLOW_TEST_PG_URL); one database per use."""

    def __init__(self) -> None:
        self.server = None
        self.base_url = os.environ.get("ESTATEFLOW_TEST_PG_URL")
        self._count = 0

    def __enter__(self) -> Postgres:
        if not self.base_url:
            from tests import pgserver

            self.server = pgserver.start()
            self.base_url = self.server.url("postgres")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()

    def new_database(self, prefix: str = "bench") -> str:
        import psycopg

        self._count += 1
        name = f"{prefix}_{os.getpid()}_{self._count}"
        url = sa.engine.make_url(self.base_url)
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return url.set(database=name).render_as_string(hide_password=False)

    def version(self) -> str:
        import psycopg

        dsn = sa.engine.make_url(self.base_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]

    def settings(self) -> dict[str, str]:
        import psycopg

        dsn = sa.engine.make_url(self.base_url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            return {k: conn.execute(f"SHOW {k}").fetchone()[0]
                    for k in ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers")}


class StatementCounter:
    """Counts the statements an engine sends (``before_cursor_execute``), by kind and table."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.total = 0
        self.kinds: Counter[str] = Counter()
        self.active = False
        sa.event.listen(engine, "before_cursor_execute", self._on)

    def _on(self, conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        if self.active:
            self.total += 1
            self.kinds[_describe(statement)] += 1

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._on)


def _describe(statement: str) -> str:
    words = statement.split()
    verb = words[0].upper() if words else "?"
    upper = [w.upper() for w in words]
    table = ""
    for key in ("FROM", "INTO", "UPDATE"):
        if key in upper:
            i = upper.index(key)
            if i + 1 < len(words):
                table = words[i + 1].strip('"(').split("(")[0]
                break
    if verb == "SELECT" and "FROM" not in upper:
        table = "(no table)"
    if verb == "SELECT" and "COUNT(*)" in statement.upper().replace(" ", "") or "max(calendar_overrides" in statement:
        table += " [count/max]"
    return f"{verb} {table}".strip()


# -- the ticket workflow ---------------------------------------------------------------------------
def ticket_engine(url: str, directory: Path, **kwargs: Any) -> Any:
    """An Engine on ``url`` with only tests/data/workflows/ticket.yaml and the test actors."""
    from estateflow import Engine, StaticDirectory
    from tests.engine_helpers import ACTORS

    workflows = directory / "workflows"
    workflows.mkdir(exist_ok=True)
    shutil.copy(TICKET_YAML, workflows / "ticket.yaml")
    return Engine(url, workflows, create=True, directory=StaticDirectory(ACTORS), **kwargs)


def attach_engine(url: str, directory: Path) -> Any:
    """Another process's Engine on an existing database (no schema creation)."""
    from estateflow import Engine, StaticDirectory
    from tests.engine_helpers import ACTORS

    return Engine(url, directory / "workflows", directory=StaticDirectory(ACTORS))


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def machine_summary() -> dict[str, str]:
    """nproc, memory, CPU model and versions, for the report."""
    import platform
    from importlib.metadata import version

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    libs = {name: version(name) for name in ("SQLAlchemy", "transitions", "psycopg", "chinesecalendar")}
    import sqlite3

    return {"python": platform.python_version(), "nproc": str(os.cpu_count()), "memory": mem, "cpu": cpu,
            "sqlite": sqlite3.sqlite_version, **libs}


def print_header(name: str, args: argparse.Namespace) -> None:
    info = machine_summary()
    mode = "full" if getattr(args, "full", False) else ("quick" if getattr(args, "quick", False) else "default")
    note(f"# {name} ({mode}, median of {args.repeats}) on {info['cpu']}, {info['nproc']} CPUs, {info['memory']}; "
         f"Python {info['python']}, SQLAlchemy {info['SQLAlchemy']}, SQLite {info['sqlite']}, "
         f"transitions {info['transitions']}, psycopg {info['psycopg']}")


# -- seeding cases in bulk -------------------------------------------------------------------------------
def case_row(cid: int, revision: int, started: datetime) -> dict[str, Any]:
    """A started ticket case (state ``working``) as Core would insert it; ids are given."""
    number = f"TK-east-2025-{cid:07d}"
    unit = f"3-{cid % 3000}"
    return {"id": cid, "number": number, "workflow": "ticket", "revision": revision, "state": "working",
            "community": "east", "building": None, "unit": unit, "category": None, "department": "eng",
            "assignee": "worker", "priority": "normal", "major": False,
            "data": {"community": "east", "summary": f"lift noise {cid}", "unit": unit, "customer_name": "张三",
                     "phone": "13800138000", "assignee": "worker", "department": "eng"},
            "search_text": f"{number} 张三 13800138000 {unit}".lower(), "received_at": started,
            "created_at": started, "updated_at": started, "closed_at": None, "voided": False, "row_version": 2}


def clock_row(cid: int, started: datetime, due: datetime) -> dict[str, Any]:
    """The running ``response`` clock of case ``cid`` (clock id = case id)."""
    return {"id": cid, "case_id": cid, "name": "response", "cycle": 1, "status": "running",
            "target": "3 working days", "calendar": "cn", "started_at": started, "due_at": due,
            "paused_at": None, "stopped_at": None, "breached_at": None, "escalation_level": 0,
            "extensions": 0, "data": {}}


def timer_row(tid: int, cid: int, kind: str, due: datetime, created: datetime, step: int = 0) -> dict[str, Any]:
    payload = {"warn": "50%", "clock": "response"} if kind == "warn" else {"clock": "response"}
    return {"id": tid, "case_id": cid, "clock_id": cid, "kind": kind, "step": step, "due_at": due,
            "status": "pending", "claimed_by": None, "lease_until": None, "attempts": 0, "last_error": None,
            "payload": payload, "created_at": created, "fired_at": None}


def fix_sequences(db: sa.Engine) -> None:
    """After inserting explicit ids on PostgreSQL, move the id sequences past them; then ANALYZE."""
    with db.begin() as conn:
        if db.dialect.name == "postgresql":
            for table in ("cases", "sla_clocks", "timers"):
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT coalesce(max(id), 1) FROM {table}))"))
    with db.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
        conn.commit()


def vacuum(db: sa.Engine) -> None:
    """Between repeats that rewrite many rows: dead tuples (PostgreSQL) would slow later repeats."""
    if db.dialect.name == "postgresql":
        with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))


def process_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set size of a process in MiB, from /proc (Linux)."""
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _unit = line.split()
                values[key] = int(amount) / 1024
    return values["VmRSS:"], values["VmHWM:"]
