"""Firing lag of `estateflow run` (due time -> fired) in real time, and a burst of timers due at once.

Real time on purpose: lag is about the daemon's own sleeping and waking, so the timers are due
a few seconds after wall-clock now and the daemon runs with its default settings
(``python3 -m estateflow --db URL --workflows DIR run``: 1 s poll interval, wake-up at each
due time). A poller in this process reads the fired timers every ~10 ms; a timer's fire time
is the end of the first poll that sees it committed (an upper bound: the lag is over-stated
by at most one poll cycle, printed as the resolution).

1. *Spread*: N warning timers (history + outbox row each) due evenly over S seconds.
   Ceiling in the same run: APScheduler's in-memory BackgroundScheduler running the same
   schedule of no-op date jobs (no database at all).
2. *Burst*: 5,000 warnings due at the same instant, twice. First with nothing else running:
   drained within 1.5x of 5,000 / the timer throughput measured by ``engine.tick()`` on the
   same database in the same run. Then again while another process calls ``fire()``
   (park/unpark): its p99 during the burst must stay within 2x its idle p99 plus one batch
   commit (200 timers at the measured throughput); the drain time under that load is shown too.
   The fire() load is paced at 50 calls/s (a busy front desk), not flat out: flat out on
   SQLite it takes the write lock back to back and starves the daemon (SQLite's busy handler
   sleeps 1..100 ms between retries), which measures the lock, not the daemon.

    python3 bench/lag.py [--quick|--full] [--no-pg]
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from _common import (ROOT, Postgres, Table, case_row, clock_row, fix_sequences, note, parse_args,
                     print_header, ticket_engine, timer_row, verdict, workdir)

import sqlalchemy as sa

STARTED = datetime(2025, 9, 26, 2, 0, tzinfo=timezone.utc)
BURST = 5_000
BATCH = 200
TARGET_P99 = 1.0
FIRE_RATE = 50  # fire() calls per second alongside the burst


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# -- seeding -----------------------------------------------------------------------------------------
def seed(engine: Any, first: int, due: list[datetime]) -> list[int]:
    """Cases first+1.. with a running clock and one warning timer each, due at ``due[i]``."""
    from estateflow.engine._schema import cases, sla_clocks, timers

    revision = engine.workflows().get(None, "ticket").revision
    far = datetime.now(timezone.utc) + timedelta(days=30)
    ids = list(range(first + 1, first + len(due) + 1))
    with engine.db.connect() as conn:
        next_timer = (conn.execute(sa.select(sa.func.max(timers.c.id))).scalar() or 0) + 1
    for lo in range(0, len(ids), 10_000):
        part = ids[lo:lo + 10_000]
        with engine.db.begin() as conn:
            conn.execute(cases.insert(), [case_row(cid, revision, STARTED) for cid in part])
            conn.execute(sla_clocks.insert(), [clock_row(cid, STARTED, far) for cid in part])
            conn.execute(timers.insert(), [timer_row(next_timer + i, cid, "warn", due[lo + i], STARTED)
                                           for i, cid in enumerate(part)])
            next_timer += len(part)
    fix_sequences(engine.db)
    return ids


def set_due(engine: Any, case_ids: list[int], due: list[datetime]) -> None:
    """Make these cases' warnings pending again, due at ``due``; drop what firing them wrote."""
    from estateflow.engine._schema import timers

    stmt = (timers.update().where(timers.c.case_id == sa.bindparam("w_case"), timers.c.kind == "warn")
            .values(due_at=sa.bindparam("w_due"), status="pending", claimed_by=None, lease_until=None,
                    fired_at=None, attempts=0))
    with engine.db.begin() as conn:
        conn.execute(stmt, [{"w_case": c, "w_due": d} for c, d in zip(case_ids, due)])
        conn.execute(sa.text("DELETE FROM case_events WHERE kind='clock_warning'"))
        conn.execute(sa.text("DELETE FROM outbox WHERE event='warning'"))


# -- observing -----------------------------------------------------------------------------------------
class Poller(threading.Thread):
    """Records when each warning timer is first seen fired (status index range on due_at)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        from estateflow.engine._db import connect

        self.db = connect(url).execution_options(estateflow_readonly=True)
        self.seen: dict[int, float] = {}
        self.cycles: list[float] = []
        self.running = True

    def run(self) -> None:
        from estateflow.engine._schema import timers

        query = sa.select(timers.c.id).where(timers.c.status == "fired", timers.c.kind == "warn",
                                             timers.c.due_at >= sa.bindparam("lo"), timers.c.due_at <= sa.bindparam("hi"))
        with self.db.connect() as conn:
            while self.running:
                t0 = time.time()
                now = datetime.now(timezone.utc)
                ids = conn.execute(query, {"lo": now - timedelta(seconds=120), "hi": now + timedelta(seconds=1)}) \
                    .scalars().all()
                conn.rollback()
                seen_at = time.time()
                for i in ids:
                    self.seen.setdefault(i, seen_at)
                self.cycles.append(seen_at - t0)
                time.sleep(0.01)

    def stop(self) -> None:
        self.running = False
        self.join(timeout=10)
        self.db.engine.dispose()


def due_times(engine: Any, case_ids: list[int]) -> dict[int, float]:
    from estateflow.engine._schema import timers

    with engine.db.connect() as conn:
        rows = conn.execute(sa.select(timers.c.id, timers.c.due_at).where(
            timers.c.kind == "warn", timers.c.case_id.in_(case_ids))).all()
    return {r.id: r.due_at.timestamp() for r in rows}


def start_daemon(url: str, directory: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "estateflow", "--db", url, "--workflows",
                             str(directory / "workflows"), "run"], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env=env, cwd=directory)


def stop_daemon(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_seen(poller: Poller, ids: set[int], deadline: float) -> None:
    while time.time() < deadline and not ids <= poller.seen.keys():
        time.sleep(0.05)


# -- the in-memory ceiling ---------------------------------------------------------------------------------
def apscheduler_lag(offsets: list[float]) -> list[float]:
    from apscheduler.schedulers.background import BackgroundScheduler

    lags: list[float] = []
    lock = threading.Lock()

    def job(due: float) -> None:
        with lock:
            lags.append(time.time() - due)
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"misfire_grace_time": None})
    scheduler.start()
    base = time.time() + 2
    for off in offsets:
        due = base + off
        scheduler.add_job(job, "date", run_date=datetime.fromtimestamp(due, timezone.utc), args=(due,))
    deadline = base + max(offsets) + 30
    while len(lags) < len(offsets) and time.time() < deadline:
        time.sleep(0.05)
    scheduler.shutdown(wait=True)
    return lags


# -- fire() alongside ----------------------------------------------------------------------------------
def _fire_loop(url: str, directory: str, ids: list[int], until: float, out: Any) -> None:
    """``FIRE_RATE`` fire() calls a second (a busy front desk), each timed."""
    from _common import attach_engine

    engine = attach_engine(url, Path(directory))
    engine.workflows()
    samples = []
    k = 0
    begin = time.time()
    while time.time() < until:
        time.sleep(max(0.0, begin + k / FIRE_RATE - time.time()))
        case_id = ids[k % len(ids)]
        trigger = "park" if (k // len(ids)) % 2 == 0 else "unpark"
        t0 = time.time()
        engine.fire(case_id, trigger, actor="worker")
        samples.append((t0, time.time() - t0))
        k += 1
    engine.close()
    out.put(samples)


def open_fire_cases(engine: Any, n: int) -> list[int]:
    ids = []
    for i in range(n):
        case = engine.open("ticket", {"community": "east", "summary": f"fire {i}", "unit": f"9-{i}",
                                      "customer_name": "张三", "phone": "13800138000"}, actor="clerk")
        ids.append(engine.fire(case.id, "start", actor="clerk", data={"assignee": "worker", "department": "eng"}).id)
    return ids


# -- one backend ------------------------------------------------------------------------------------------
def run_backend(name: str, url: str, directory: Path, n: int, seconds: float, burst: int, lag_table: Table,
                burst_table: Table) -> None:
    engine = ticket_engine(url, directory)
    engine.workflows()
    fire_ids = open_fire_cases(engine, 100)
    first = 100_000
    lead = 5.0
    spread_ids = seed(engine, first, [datetime(2030, 1, 1, tzinfo=timezone.utc)] * n)
    burst_ids = seed(engine, first + n, [STARTED] * burst)

    # reference throughput: engine.tick() on the burst timers, due now, same database
    ref_now = datetime.now(timezone.utc) + timedelta(days=1)
    set_due(engine, burst_ids, [ref_now - timedelta(seconds=1)] * burst)
    t0 = time.perf_counter()
    ref = engine.timer_runner.tick(ref_now, batch=BATCH)
    ref_seconds = time.perf_counter() - t0
    assert ref.count == burst, ref.count
    throughput = burst / ref_seconds
    batch_seconds = BATCH / throughput
    note(f"{name}: reference engine tick fired {burst:,} timers in {ref_seconds:.2f} s = {throughput:,.0f}/s")

    # 1. spread
    start = datetime.now(timezone.utc) + timedelta(seconds=lead)
    due = [start + timedelta(seconds=seconds * i / n) for i in range(n)]
    set_due(engine, spread_ids, due)
    set_due(engine, burst_ids, [datetime(2030, 1, 1, tzinfo=timezone.utc)] * burst)
    dues = due_times(engine, spread_ids)
    poller = Poller(url)
    poller.start()
    daemon = start_daemon(url, directory, directory / f"daemon-spread-{name}.log")
    try:
        wait_seen(poller, set(dues), time.time() + lead + seconds + 60)
    finally:
        stop_daemon(daemon)
        poller.stop()
    lags = [poller.seen[i] - dues[i] for i in dues if i in poller.seen]
    missing = len(dues) - len(lags)
    ceiling = apscheduler_lag([seconds * i / n for i in range(n)])
    resolution = statistics.mean(poller.cycles) + 0.01
    p50, p99, worst = pct(lags, 50), pct(lags, 99), max(lags)
    lag_table.add(name, f"{n:,} over {seconds:g} s", f"{p50 * 1000:.0f}", f"{p99 * 1000:.0f}",
                  f"{worst * 1000:.0f}", f"{missing}", f"{pct(ceiling, 50) * 1000:.1f} / {pct(ceiling, 99) * 1000:.1f}",
                  f"{resolution * 1000:.0f}",
                  f"p99 <= {TARGET_P99:g} s: {verdict(p99 <= TARGET_P99 and not missing)}")

    # 2. burst: alone (the daemon's own drain), then with fire() calls alongside
    engine.close()
    alone, _ = burst_phase(name, url, directory, burst_ids, throughput, lead, fire_ids=None)
    drained, samples = burst_phase(name, url, directory, burst_ids, throughput, lead, fire_ids=fire_ids)
    t_burst = samples["t"]
    idle = [d for t0, d in samples["calls"] if t0 + d < t_burst - 0.2 and t0 > t_burst - lead]
    during = [d for t0, d in samples["calls"] if t0 < t_burst + drained and t0 + d > t_burst]
    idle99, during99 = pct(idle, 99), pct(during, 99) if during else float("nan")
    limit = 1.5 * burst / throughput
    fire_limit = 2 * idle99 + batch_seconds
    burst_table.add(name, f"{alone:.2f}", f"{drained:.2f}", f"{throughput:,.0f}/s ({ref_seconds:.2f} s)",
                    f"{alone / ref_seconds:.2f}", f"{idle99 * 1000:.1f} ({len(idle)})",
                    f"{during99 * 1000:.1f} ({len(during)})", f"{batch_seconds * 1000:.0f}",
                    f"drain alone <= {limit:.2f} s: {verdict(alone <= limit)}; fire p99 <= {fire_limit * 1000:.0f} ms: "
                    f"{verdict(during99 <= fire_limit)}")


def burst_phase(name: str, url: str, directory: Path, burst_ids: list[int], throughput: float, lead: float,
                fire_ids: list[int] | None) -> tuple[float, dict[str, Any]]:
    """All burst timers due at one instant a few seconds ahead; (seconds to drain, fire() samples)."""
    from estateflow import Engine

    burst_at = datetime.now(timezone.utc) + timedelta(seconds=lead + 2)
    engine = Engine(url, directory / "workflows")
    set_due(engine, burst_ids, [burst_at] * len(burst_ids))
    dues = due_times(engine, burst_ids)
    engine.close()
    until = burst_at.timestamp() + max(4.0, 3 * len(burst_ids) / throughput)
    ctx = mp.get_context("spawn")
    samples_q = ctx.Queue()
    firer = ctx.Process(target=_fire_loop, args=(url, str(directory), fire_ids, until, samples_q)) \
        if fire_ids else None
    poller = Poller(url)
    poller.start()
    daemon = start_daemon(url, directory, directory / f"daemon-burst-{name}-{'load' if fire_ids else 'alone'}.log")
    if firer is not None:
        firer.start()
    calls: list[tuple[float, float]] = []
    try:
        wait_seen(poller, set(dues), until + 120)
        if firer is not None:
            calls = samples_q.get(timeout=until - time.time() + 120)
            firer.join(timeout=60)
    finally:
        stop_daemon(daemon)
        poller.stop()
    t_burst = burst_at.timestamp()
    seen = [poller.seen[i] for i in dues if i in poller.seen]
    drained = max(seen) - t_burst if len(seen) == len(dues) else float("inf")
    return drained, {"t": t_burst, "calls": calls}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: p.add_argument("--no-pg", action="store_true"))
    print_header("lag.py", args)
    n, seconds = (1_000, 5.0) if args.quick else (10_000, 60.0)
    burst = 2_000 if args.quick else BURST
    if args.quick:
        note("quick: SQLite only, 1,000 timers over 5 s, a burst of 2,000 (the full sizes: without --quick)")
    lag_table = Table("Firing lag of `estateflow run` with default settings (real time, ms)",
                      ["backend", "timers", "p50 ms", "p99 ms", "max ms", "not fired", "ceiling p50 / p99 ms "
                       "(APScheduler in memory, no database)", "poll resolution ms", "target"])
    burst_table = Table(f"Burst: {burst:,} timers due at the same instant (daemon with default settings)",
                        ["backend", "drained alone s", "drained with fire() load s",
                         "engine.tick() throughput (same run)", "drain alone / tick time",
                         "fire() p99 idle ms (calls)", "fire() p99 during burst ms (calls)", "one batch ms",
                         "targets"])
    with workdir("estateflow-bench-lag-") as tmp:
        (tmp / "sqlite").mkdir()
        run_backend("SQLite", f"sqlite:///{tmp / 'sqlite' / 'lag.db'}", tmp / "sqlite", n, seconds, burst,
                    lag_table, burst_table)
        if not args.no_pg and not args.quick:
            (tmp / "pg").mkdir()
            with Postgres() as pg:
                run_backend("PostgreSQL", pg.new_database("lag"), tmp / "pg", n, seconds, burst, lag_table,
                            burst_table)
    lag_table.print()
    burst_table.print()


if __name__ == "__main__":
    main()
