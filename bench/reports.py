"""Reports on a big register: `report weekly` and `report sla` over 1,000,000 cases (< 2 s each).

Complaint and repair cases spread over two years up to Monday 2025-10-13 09:00 (Shanghai) are
seeded in bulk through the driver (sqlite3 executemany / psycopg COPY): 60% complaints, 40%
repairs, 40 communities, 6 departments, 120 handlers; two clock cycles per case with due times
from the real working-day calendar, ~9% of them breached (with breach and escalation events),
cases older than three weeks closed but 1% left open, recent ones partly open; history rows for
opening, assignment, closing, callbacks and breaches (~4.5 per case). The seeded databases are
cached under /tmp/estateflow-bench-reports/ (SQLite files, and a PostgreSQL data directory kept
between runs; ``--cache DIR`` or ESTATEFLOW_BENCH_CACHE puts them elsewhere, e.g. on /dev/shm when
the disk is short: 1M cases take about 2.4 GB on SQLite and 3 GB on PostgreSQL), so only the first
run pays for seeding. Seeding uses relaxed durability
(SQLite ``synchronous=OFF``) — it is set-up, not a measured figure; reports run on the engine's
normal connection.

Timed (median of --repeats after one warm-up call): ``engine.report_weekly()`` (the last full
week) and ``engine.report_sla()`` (the last full month) as `estateflow report` calls them, plus
the register (a week) and ratings (a quarter) for information. Peer in the same run: a full
scan of the cases table (``SELECT count(*) ... WHERE search_text LIKE ...``), i.e. what one pass over
every case costs on this database; a report below it shows it touches only the rows it needs.

    python3 bench/reports.py [--quick|--full] [--no-pg] [--sizes 1000000] [--reseed]
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from _common import ROOT, SH, Table, median, note, parse_args, print_header, spread, verdict

import sqlalchemy as sa

CACHE = Path(os.environ.get("ESTATEFLOW_BENCH_CACHE", "/tmp/estateflow-bench-reports"))
SEED_VERSION = "3"
NOW = datetime(2025, 10, 13, 9, 0, tzinfo=SH)
SPAN = timedelta(days=730)
CHUNK = 50_000
TARGET = 2.0
UTC = timezone.utc
DEPARTMENTS = ("engineering", "customer_service", "security", "cleaning", "landscaping", "property_management")
COMPLAINT_CATEGORIES = ("quality", "service", "property_management", "sales", "design", "delivery", "other")
REPAIR_CATEGORIES = ("leak", "electrical", "plumbing", "structure", "decoration", "equipment", "door_window")
CHANNELS = ("hotline", "walk_in", "letter", "email", "website", "patrol")
RATINGS = ("satisfied", "satisfied", "satisfied", "basically_satisfied", "dissatisfied")


# -- seeding ---------------------------------------------------------------------------------------
class Seeder:
    """Generates rows for cases ``lo``..``hi``-1 deterministically (seeded per chunk)."""

    def __init__(self, n: int, revisions: dict[str, int]) -> None:
        from estateflow import BusinessCalendar

        self.n = n
        self.revisions = revisions
        self.calendar = BusinessCalendar("cn")
        self.clock_id = 0
        self.event_id = 0

    def chunk(self, lo: int, hi: int) -> tuple[list[tuple], list[tuple], list[tuple]]:
        rng = random.Random(lo)
        cases, clocks, events = [], [], []
        start = NOW - SPAN
        for i in range(lo, hi):
            cid = i + 1
            received = (start + SPAN * (i / self.n) + timedelta(minutes=rng.randrange(0, 59))).astimezone(UTC)
            received = min(received, NOW.astimezone(UTC) - timedelta(minutes=1))
            repair = rng.random() < 0.4
            workflow = "repair" if repair else "complaint"
            dept = rng.randrange(len(DEPARTMENTS))
            department = "engineering" if repair else DEPARTMENTS[dept]
            assignee = f"h{DEPARTMENTS.index(department)}{rng.randrange(20):02d}"
            category = rng.choice(REPAIR_CATEGORIES if repair else COMPLAINT_CATEGORIES)
            community = f"c{i % 40:02d}"
            age = NOW.astimezone(UTC) - received
            if age > timedelta(days=21):
                closed = rng.random() >= 0.01
            else:
                closed = rng.random() < age / timedelta(days=21) * 0.9
            handling = timedelta(hours=rng.randrange(4, 24 * 12))
            closed_at = min(received + handling, NOW.astimezone(UTC) - timedelta(seconds=30)) if closed else None
            number = f"{'BX' if repair else 'TS'}-{received.year}-{cid:07d}"
            data: dict[str, Any] = {"channel": rng.choice(CHANNELS), "customer_name": "张三", "phone": "13800138000",
                                    "unit": f"{i % 30 + 1}-{i % 2800 + 101}", "summary": f"问题描述 {i}",
                                    "community": community, "category": category, "department": department,
                                    "assignee": assignee}
            major = not repair and rng.random() < 0.005
            if major:
                data["major"] = True
            if repair and closed:
                data.update(quality_score=rng.randrange(3, 6), attitude_score=rng.randrange(3, 6),
                            callback_rating=rng.choice(RATINGS))
            state = ("closed" if closed else ("in_repair" if repair else "in_progress"))
            cases.append((cid, number, workflow, self.revisions[workflow], state, community, None, data["unit"],
                          category, department, assignee, "normal", major, json.dumps(data, ensure_ascii=False),
                          f"{number} 张三 13800138000".lower(), received, received, closed_at or received, closed_at,
                          False, 3))
            events.append(self._event(cid, "opened", None, None, state, "clerk", {"revision": f"{workflow}@r1"},
                                      received))
            first, second = (("survey", "1 working day"), ("repair", "3 working days")) if repair \
                else (("feedback", "3 working days"), ("resolution", "7 days"))
            assigned = received + timedelta(minutes=rng.randrange(10, 240))
            events.append(self._event(cid, "transition", "assign", "registered", "assigned", "clerk",
                                      {"changed": {"assignee": assignee}}, assigned))
            end = closed_at or NOW.astimezone(UTC)
            self._clock(clocks, events, rng, cid, first[0], first[1], assigned,
                        min(assigned + timedelta(hours=rng.expovariate(1 / 30)), end), closed or rng.random() < 0.6)
            self._clock(clocks, events, rng, cid, second[0], second[1], received, end if closed else None,
                        closed, soft=not repair)
            if closed:
                if repair:
                    events.append(self._event(cid, "transition", "callback", "callback_due", "audit", "zhao",
                                              {"changed": {"callback_rating": data["callback_rating"]}},
                                              closed_at - timedelta(minutes=30)))
                events.append(self._event(cid, "transition", "close", "in_progress", "closed", "clerk",
                                          {"changed": {}}, closed_at))
        return cases, clocks, events

    def _event(self, cid: int, kind: str, trigger: str | None, source: str | None, dest: str | None, actor: str,
               data: dict[str, Any], at: datetime) -> tuple:
        self.event_id += 1
        return (self.event_id, cid, kind, trigger, source, dest, actor, None, json.dumps(data, ensure_ascii=False), at)

    def _clock(self, clocks: list[tuple], events: list[tuple], rng: random.Random, cid: int, name: str, target: str,
               started: datetime, stop: datetime | None, stopped: bool, soft: bool = False) -> None:
        self.clock_id += 1
        due = self.calendar.add(started.astimezone(SH), target).astimezone(UTC) if "working" in target \
            else started + timedelta(days=7)
        stopped_at = stop if stopped and stop is not None else None
        now = NOW.astimezone(UTC)
        late_at = stopped_at or now
        breached = late_at > due
        met = stopped_at is not None and not breached
        level = 0
        if breached:
            events.append(self._event(cid, "clock_breach", None, None, None, "system",
                                      {"clock": name, "cycle": 1, "due_at": due.isoformat(), "soft": soft},
                                      due + timedelta(seconds=30)))
            if not soft:
                for level, after in enumerate((timedelta(0), timedelta(days=1), timedelta(days=2)), start=1):
                    if due + after > late_at:
                        level -= 1
                        break
                    events.append(self._event(cid, "escalation", None, None, None, "system",
                                              {"clock": name, "cycle": 1, "level": level, "notify": []},
                                              due + after + timedelta(seconds=40)))
        status = "stopped" if stopped_at is not None else "running"
        clocks.append((self.clock_id, cid, name, 1, status, target, "cn", started, due, None, stopped_at,
                       due if breached else None, max(level, 0), 0,
                       json.dumps({"reason": "stop", "met": met} if stopped_at is not None else {})))


CASE_COLUMNS = ("id", "number", "workflow", "revision", "state", "community", "building", "unit", "category",
                "department", "assignee", "priority", "major", "data", "search_text", "received_at", "created_at",
                "updated_at", "closed_at", "voided", "row_version")
CLOCK_COLUMNS = ("id", "case_id", "name", "cycle", "status", "target", "calendar", "started_at", "due_at",
                 "paused_at", "stopped_at", "breached_at", "escalation_level", "extensions", "data")
EVENT_COLUMNS = ("id", "case_id", "kind", "trigger", "from_state", "to_state", "actor", "on_behalf_of", "data", "at")


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


def seed_sqlite(path: Path, n: int) -> None:
    import sqlite3

    from estateflow import Engine

    with Engine(f"sqlite:///{path}", create=True) as engine:
        revisions = {name: engine.workflows().get(None, name).revision for name in ("complaint", "repair")}
    seeder = Seeder(n, revisions)
    db = sqlite3.connect(path)
    db.execute("PRAGMA synchronous=OFF")
    for lo in range(0, n, CHUNK):
        rows = seeder.chunk(lo, min(lo + CHUNK, n))
        for table, columns, data in zip(("cases", "sla_clocks", "case_events"),
                                         (CASE_COLUMNS, CLOCK_COLUMNS, EVENT_COLUMNS), rows):
            db.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                           [tuple(_sqlite_value(v) for v in row) for row in data])
        db.commit()
    db.execute("ANALYZE")
    db.commit()
    db.close()


def seed_pg(url: str, n: int) -> None:
    import psycopg

    from estateflow import Engine

    with Engine(url, create=True) as engine:
        revisions = {name: engine.workflows().get(None, name).revision for name in ("complaint", "repair")}
    seeder = Seeder(n, revisions)
    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        for lo in range(0, n, CHUNK):
            rows = seeder.chunk(lo, min(lo + CHUNK, n))
            with conn.cursor() as cur:
                for table, columns, data in zip(("cases", "sla_clocks", "case_events"),
                                                 (CASE_COLUMNS, CLOCK_COLUMNS, EVENT_COLUMNS), rows):
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in data:
                            copy.write_row(row)
            conn.commit()
        for table in ("cases", "sla_clocks", "case_events"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


# -- a PostgreSQL server whose data directory is kept between runs -----------------------------------
class CachedPostgres:
    def __init__(self, datadir: Path) -> None:
        self.datadir = datadir
        self.server: Any = None

    def __enter__(self) -> CachedPostgres:
        import pwd

        from tests import pgserver

        bindir = pgserver._find_bindir()
        if bindir is None:
            pgserver._install_postgres()
            bindir = pgserver._find_bindir()
        run_as = "postgres" if os.geteuid() == 0 else None
        user = run_as or pwd.getpwuid(os.geteuid()).pw_name
        base = self.datadir.parent
        base.mkdir(parents=True, exist_ok=True)
        if run_as:
            shutil.chown(base, user=run_as)
        if not (self.datadir / "PG_VERSION").exists():
            init = [os.path.join(bindir, "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", user, "-E", "UTF8",
                    "--no-locale"]
            subprocess.run(["runuser", "-u", run_as, "--", *init] if run_as else init, check=True,
                           capture_output=True)
        port = pgserver._free_port()
        self.server = pgserver.PgServer(bindir, str(self.datadir), port, user, run_as)
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c shared_buffers=128MB"
        result = self.server.pg_ctl("start", "-l", str(base / "pg.log"), "-o", opts, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stderr}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.stop()

    def database(self, name: str) -> tuple[str, bool]:
        """URL of database ``name``; True when it had to be created (empty)."""
        import psycopg

        admin = sa.engine.make_url(self.server.url("postgres"))
        dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
        return admin.set(database=name).render_as_string(hide_password=False), not exists

    def drop(self, name: str) -> None:
        import psycopg

        admin = sa.engine.make_url(self.server.url("postgres"))
        dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


# -- timing ----------------------------------------------------------------------------------------------
def measure(url: str, repeats: int) -> dict[str, Any]:
    from estateflow import Engine

    results: dict[str, Any] = {}
    with Engine(url) as engine:
        engine.workflows()
        calls = {"weekly": lambda: engine.report_weekly(now=NOW), "sla": lambda: engine.report_sla(now=NOW),
                 "register (week)": lambda: engine.report_register(now=NOW),
                 "ratings (quarter)": lambda: engine.report_ratings(now=NOW)}
        for name, call in calls.items():
            t0 = time.perf_counter()
            report = call()
            cold = time.perf_counter() - t0
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                call()
                times.append(time.perf_counter() - t0)
            results[name] = (median(times), times, cold, report)
        scan = (sa.select(sa.func.count()).select_from(sa.text("cases"))
                .where(sa.text("search_text LIKE '%never-there%'")))
        times = []
        with engine.db.connect() as conn:
            conn.execute(scan).scalar()
            for _ in range(repeats):
                t0 = time.perf_counter()
                conn.execute(scan).scalar()
                times.append(time.perf_counter() - t0)
        results["scan"] = (median(times), times, None, None)
    return results


def cli_seconds(url: str) -> dict[str, float]:
    """`estateflow report weekly|sla --json` end to end (a fresh Python process each)."""
    found = {}
    env = dict(os.environ, PYTHONPATH=str(ROOT), ESTATEFLOW_DB=url)
    for name in ("weekly", "sla"):
        t0 = time.perf_counter()
        subprocess.run(["python3", "-m", "estateflow", "--json", "report", name, "--now", NOW.isoformat()],
                       check=True, env=env, capture_output=True, cwd=str(ROOT))
        found[name] = time.perf_counter() - t0
    return found


def report_rows(table: Table, backend: str, n: int, results: dict[str, Any], cli: dict[str, float] | None) -> None:
    scan = results["scan"][0]
    for name in ("weekly", "sla", "register (week)", "ratings (quarter)"):
        seconds, times, cold, report = results[name]
        targeted = name in ("weekly", "sla")
        size = {"weekly": lambda r: f"{r.totals.opened:,} opened, {r.totals.open_at_end:,} open",
                "sla": lambda r: f"{sum(c.started for c in r.clocks):,} cycles",
                "register (week)": lambda r: f"{len(r.rows):,} rows",
                "ratings (quarter)": lambda r: f"{sum(w.jobs for w in r.workers):,} jobs"}[name](report)
        table.add(backend, f"{n:,}", name, f"{seconds:.3f} ({spread(times)})", f"{cold:.3f}",
                  f"{scan:.3f}", f"{seconds / scan:.2f}", size,
                  f"{cli[name.split()[0]]:.2f}" if cli and name in cli else "",
                  f"< {TARGET:g} s: {verdict(seconds < TARGET)}" if targeted else "–")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--no-pg", action="store_true", help="SQLite only"),
        p.add_argument("--sizes", type=int, nargs="+", default=None, help="numbers of cases"),
        p.add_argument("--reseed", action="store_true", help="ignore the cached databases"),
        p.add_argument("--cache", default=None, help="directory of the cached databases")))
    global CACHE
    if args.cache:
        CACHE = Path(args.cache)
    print_header("reports.py", args)
    sizes = args.sizes or ([20_000] if args.quick else [1_000_000])
    table = Table("engine.report_*() on a seeded register (median, min..max; warm-up call shown as 'first')",
                  ["backend", "cases", "report", "seconds", "first", "full scan s", "÷ scan", "size",
                   "CLI s", "target"])
    CACHE.mkdir(parents=True, exist_ok=True)
    for n in sizes:
        path = CACHE / f"reports-{n}-v{SEED_VERSION}.db"
        if args.reseed or not path.exists():
            for stale in CACHE.glob(f"reports-{n}-v*.db*"):
                stale.unlink()
            t0 = time.perf_counter()
            seed_sqlite(path, n)
            note(f"SQLite: seeded {n:,} cases in {time.perf_counter() - t0:.0f} s ({path})")
        url = f"sqlite:///{path}"
        report_rows(table, "SQLite", n, measure(url, args.repeats), cli_seconds(url) if not args.quick else None)
    if not args.no_pg:
        with CachedPostgres(CACHE / "pg" / "data") as pg:
            for n in sizes:
                name = f"reports_{n}_v{SEED_VERSION}"
                if args.reseed:
                    pg.drop(name)
                url, fresh = pg.database(name)
                if fresh:
                    t0 = time.perf_counter()
                    try:
                        seed_pg(url, n)
                    except BaseException:
                        pg.drop(name)
                        raise
                    note(f"PostgreSQL: seeded {n:,} cases in {time.perf_counter() - t0:.0f} s")
                report_rows(table, "PostgreSQL", n, measure(url, args.repeats),
                            cli_seconds(url) if not args.quick else None)
    table.print()
    note("÷ scan: the report's time over one full scan of the cases table in the same run (below 1: the "
         "report reads less than every case once). CLI s: `estateflow --json report NAME` in a new process.")


if __name__ == "__main__":
    main()
