"""Timers fired per second with full effects, 1 and 4 processes on PostgreSQL, exactly once.

Workload: N ticket cases, each with a running clock and one breach timer already due. Firing a
breach timer writes the clock's ``breached_at``, a ``clock_breach`` history row, an outbox row
and two escalation timers (the ladder, due later), and marks the timer fired. Every run is
verified afterwards: each timer fired exactly once, exactly one history row, one outbox row and
two escalation timers per case. Peers in the same run, same database:

- *engine*: ``TimerRunner.tick`` (the daemon's firing loop without outbox delivery) in P
  processes, batch 200 (the default);
- *bare*: the same rows in plain SQLAlchemy Core, batch 200: ``SELECT … FOR UPDATE SKIP
  LOCKED``, then one executemany per table and one UPDATE marking the batch fired, one
  transaction per batch (no case lock, no reads, no rendering): the database's share alone;
- *APScheduler 3.11*: one date job per timer in a ``SQLAlchemyJobStore`` on the same database,
  S ``BackgroundScheduler`` processes sharing it (the set-up a user would pick for several
  daemons), each job writing the same rows in its own transaction; default
  ``misfire_grace_time`` (1 s), and once with ``misfire_grace_time=None``. Misfires and
  duplicate executions are counted.

    python3 bench/timers.py [--quick|--full] [--procs 4]
"""

from __future__ import annotations

import multiprocessing as mp
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import (Postgres, Table, at, case_row, clock_row, fix_sequences, median, note, parse_args,
                     print_header, spread, timer_row, vacuum, verdict, workdir)

import sqlalchemy as sa

NOW = at(2025, 10, 1, 9, 0)  # every seeded breach is due (spread over the 50 minutes before)
STARTED = at(2025, 9, 26, 10, 0)
BATCH = 200
TARGET_RATIO, STRETCH = 0.5, 10_000
CHUNK = 10_000


def bench_engine(url: str, directory: Path, create: bool = False) -> Any:
    """An Engine with the ticket workflow whose first ladder step comes an hour after the breach
    (so firing a breach schedules escalations instead of firing them in the same run)."""
    from estateflow import Engine, StaticDirectory
    from tests.engine_helpers import ACTORS

    from _common import TICKET_YAML

    workflows = directory / "workflows"
    if create:
        workflows.mkdir(exist_ok=True)
        text = TICKET_YAML.read_text(encoding="utf-8")
        patched = text.replace("{after: 0 minutes, notify: [assignee]}", "{after: 1 hour, notify: [assignee]}")
        assert patched != text
        (workflows / "ticket.yaml").write_text(patched, encoding="utf-8")
    return Engine(url, workflows, create=create, directory=StaticDirectory(ACTORS))


def seed(engine: Any, n: int) -> None:
    from estateflow.engine._schema import cases, sla_clocks, timers

    revision = engine.workflows().get(None, "ticket").revision
    for lo in range(0, n, CHUNK):
        ids = range(lo + 1, min(lo + CHUNK, n) + 1)
        due = {cid: NOW - timedelta(seconds=3000 * (n - cid + 1) / n) for cid in ids}  # within 50 minutes
        with engine.db.begin() as conn:
            conn.execute(cases.insert(), [case_row(cid, revision, STARTED) for cid in ids])
            conn.execute(sla_clocks.insert(), [clock_row(cid, STARTED, due[cid]) for cid in ids])
            conn.execute(timers.insert(), [timer_row(cid, cid, "breach", due[cid], STARTED) for cid in ids])
    fix_sequences(engine.db)


def reset(db: sa.Engine) -> None:
    with db.begin() as conn:
        for sql in ("DELETE FROM case_events", "DELETE FROM outbox", "DELETE FROM heartbeats",
                    "DELETE FROM timers WHERE kind <> 'breach'",
                    "UPDATE timers SET status='pending', claimed_by=NULL, lease_until=NULL, fired_at=NULL, "
                    "attempts=0, last_error=NULL",
                    "UPDATE sla_clocks SET breached_at=NULL, escalation_level=0",
                    "DROP TABLE IF EXISTS apscheduler_jobs"):
            conn.execute(sa.text(sql))
    vacuum(db)


def verify(db: sa.Engine, n: int) -> dict[str, int]:
    """Exactly once, per timer and per effect; returns what was found (checked by the caller)."""
    with db.connect() as conn:
        one = lambda sql: conn.execute(sa.text(sql)).scalar()  # noqa: E731
        return {
            "fired": one("SELECT count(*) FROM timers WHERE kind='breach' AND status='fired'"),
            "pending": one("SELECT count(*) FROM timers WHERE kind='breach' AND status='pending'"),
            "history": one("SELECT count(*) FROM case_events WHERE kind='clock_breach'"),
            "history cases": one("SELECT count(DISTINCT case_id) FROM case_events WHERE kind='clock_breach'"),
            "outbox": one("SELECT count(*) FROM outbox WHERE event='breach'"),
            "escalations": one("SELECT count(*) FROM timers WHERE kind='escalate'"),
            "breached clocks": one("SELECT count(*) FROM sla_clocks WHERE breached_at IS NOT NULL"),
        }


def exactly_once(found: dict[str, int], n: int) -> bool:
    return (found["fired"] == found["history"] == found["history cases"] == found["outbox"]
            == found["breached clocks"] == n and found["escalations"] == 2 * n and found["pending"] == 0)


# -- the bare batched peer ---------------------------------------------------------------------------
def bare_loop(db: sa.Engine, now: Any, worker: str) -> int:
    from datetime import datetime, timezone

    from _aps_job import breach_rows, statements

    from estateflow.engine._schema import timers

    stmts = statements(db.dialect.name)
    claim = (sa.select(timers.c.id, timers.c.case_id, timers.c.clock_id, timers.c.due_at)
             .where(timers.c.status == "pending", timers.c.due_at <= sa.bindparam("w_now"))
             .order_by(timers.c.due_at, timers.c.id).limit(BATCH))
    claim = claim.with_for_update(skip_locked=True) if db.dialect.name == "postgresql" else claim
    fired = 0
    while True:
        with db.begin() as conn:
            batch = conn.execute(claim, {"w_now": now}).all()
            if not batch:
                return fired
            stamp = datetime.now(timezone.utc)
            rows = [breach_rows(t.id, t.case_id, t.clock_id, t.due_at, stamp) for t in batch]
            conn.execute(stmts["clock"], [r["clock"] for r in rows])
            conn.execute(stmts["event"], [r["event"] for r in rows])
            conn.execute(stmts["outbox"], [r["outbox"] for r in rows])
            conn.execute(stmts["timers"], [t for r in rows for t in r["timers"]])
            conn.execute(stmts["fired"], {"w_ids": [t.id for t in batch], "w_now": now, "w_worker": worker})
            fired += len(batch)


# -- worker processes ----------------------------------------------------------------------------------
def _worker(url: str, directory: str, barrier: Any, inbox: Any, results: Any) -> None:
    import os

    engine = bench_engine(url, Path(directory))
    engine.workflows()
    with engine.db.connect() as conn:  # warm the pool, as a running daemon would be
        conn.execute(sa.text("SELECT 1"))
    while True:
        command = inbox.get()
        if command is None:
            break
        barrier.wait()
        t0 = time.monotonic()
        if command == "engine":
            count = engine.timer_runner.tick(NOW, batch=BATCH).count
        else:
            count = bare_loop(engine.db, NOW, f"bare-{os.getpid()}")
        results.put((t0, time.monotonic(), count))
    engine.close()


def run_workers(url: str, directory: Path, procs: int, kinds: list[str], n: int, repeats: int,
                db: sa.Engine) -> dict[str, dict[str, Any]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    inboxes = [ctx.Queue() for _ in range(procs)]
    results = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, str(directory), barrier, inbox, results)) for inbox in inboxes]
    for w in workers:
        w.start()
    out: dict[str, dict[str, Any]] = {k: {"rates": [], "ok": True, "split": []} for k in kinds}
    try:
        for _ in range(repeats):
            for kind in kinds:
                reset(db)
                for inbox in inboxes:
                    inbox.put(kind)
                spans = [results.get(timeout=900) for _ in workers]
                wall = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
                found = verify(db, n)
                out[kind]["rates"].append(n / wall)
                out[kind]["ok"] &= exactly_once(found, n) and sum(c for _, _, c in spans) == n
                out[kind]["split"].append(sorted(c for _, _, c in spans))
                if not exactly_once(found, n):
                    note(f"  {kind} x{procs}: NOT exactly once: {found}")
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for w in workers:
            w.join(timeout=60)
    return out


# -- APScheduler ------------------------------------------------------------------------------------
def apscheduler_run(url: str, db: sa.Engine, n: int, schedulers: int, grace: float | None) -> dict[str, Any]:
    """Jobs due 2 s from now in a shared SQLAlchemyJobStore; ``schedulers`` processes run them."""
    import pickle
    from datetime import datetime, timezone

    from _aps_job import fire_breach, scheduler_worker
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.util import datetime_to_utc_timestamp

    from estateflow.engine._db import normalise_url

    reset(db)
    store_url = normalise_url(url).render_as_string(hide_password=False)
    ctx = mp.get_context("spawn")
    ready = [ctx.Event() for _ in range(schedulers)]
    go = ctx.Event()
    results = ctx.Queue()
    procs = [ctx.Process(target=scheduler_worker, args=(url, -1 if grace == -1 else grace, r, go, results))
             for r in ready]
    for p in procs:
        p.start()
    for r in ready:
        r.wait(120)
    with db.connect() as conn:
        timers_due = conn.execute(sa.text("SELECT id, case_id, clock_id, due_at FROM timers WHERE kind='breach' "
                                          "ORDER BY due_at, id")).all()
    # Jobs built by APScheduler itself (add_job on a scheduler not yet started), stored exactly as
    # SQLAlchemyJobStore.add_job stores them, but in one statement: one INSERT per job would take
    # longer than the lead time.
    store = SQLAlchemyJobStore(url=store_url)
    maker = BackgroundScheduler(jobstores={"default": store}, timezone="UTC",
                                job_defaults={} if grace == -1 else {"misfire_grace_time": grace})
    due_at = datetime.now(timezone.utc) + timedelta(seconds=3 + n / 10_000)  # + building and storing the jobs
    rows = []
    for t in timers_due:
        job = maker.add_job(fire_breach, "date", run_date=due_at, id=f"t{t.id}",
                            args=(url, t.id, t.case_id, t.clock_id, t.due_at.isoformat()),
                            misfire_grace_time=1 if grace == -1 else grace, coalesce=True, max_instances=1)
        job.next_run_time = due_at
        rows.append({"id": job.id, "next_run_time": datetime_to_utc_timestamp(due_at),
                     "job_state": pickle.dumps(job.__getstate__(), store.pickle_protocol)})
    store.start(maker, "default")  # creates the table
    with store.engine.begin() as conn:
        conn.execute(store.jobs_t.insert(), rows)
    store.shutdown()
    if datetime.now(timezone.utc) > due_at - timedelta(seconds=0.5):
        note("  warning: APScheduler jobs were stored late; the first ones may count as missed")
    go.set()
    counts = [results.get(timeout=900) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    found = verify(db, n)
    last = max(c["last"] for c in counts)
    executed = sum(c["executed"] for c in counts)
    distinct = found["history cases"]
    return {"rate": distinct / max(last - due_at.timestamp(), 1e-9), "executed": executed, "distinct": distinct,
            "missed": sum(c["missed"] for c in counts), "errors": sum(c["errors"] for c in counts),
            "duplicates": found["history"] - distinct, "never": n - distinct,
            "died": sum(len(c["died"]) for c in counts), "why": sorted({w for c in counts for w in c["died"]})}


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--procs", type=int, default=4, help="processes for the multi-process runs"),
        p.add_argument("--no-apscheduler", action="store_true")))
    print_header("timers.py", args)
    n = 1_000 if args.quick else 20_000 if args.full else 6_000
    table = Table(f"Timers fired per second on PostgreSQL ({n:,} due breach timers, batch {BATCH}; median, min..max)",
                  ["processes", "engine timers/s", "bare batched Core/s", "engine/bare", "exactly once",
                   "split between processes (engine, last repeat)", "targets"])
    aps = Table("APScheduler 3.11, SQLAlchemyJobStore on the same database, one date job per timer "
                "(one run each; all jobs due at the same moment)",
                ["schedulers", "misfire_grace_time", "distinct timers/s", "executions", "missed", "duplicates",
                 "never ran", "errors", "scheduler threads died", "engine (same procs)/APScheduler"])
    with workdir("estateflow-bench-timers-") as tmp, Postgres() as pg:
        note(f"PostgreSQL {pg.version()} {pg.settings()}")
        url = pg.new_database("timers")
        engine = bench_engine(url, tmp, create=True)
        t0 = time.perf_counter()
        seed(engine, n)
        note(f"seeded {n:,} cases with a due breach timer each in {time.perf_counter() - t0:.1f} s")
        db = engine.db
        rates: dict[int, float] = {}
        for procs in (1, args.procs):
            res = run_workers(url, tmp, procs, ["engine", "bare"], n, args.repeats, db)
            eng, bare = median(res["engine"]["rates"]), median(res["bare"]["rates"])
            rates[procs] = eng
            target = f">= {TARGET_RATIO}x bare: {verdict(eng / bare >= TARGET_RATIO)}"
            if procs > 1:
                target += f"; stretch {STRETCH:,}/s: {verdict(eng >= STRETCH)}"
            table.add(procs, f"{eng:,.0f} ({spread(res['engine']['rates'])})",
                      f"{bare:,.0f} ({spread(res['bare']['rates'])})", f"{eng / bare:.2f}",
                      f"engine {'yes' if res['engine']['ok'] else 'NO'}, bare {'yes' if res['bare']['ok'] else 'NO'}",
                      "/".join(map(str, res["engine"]["split"][-1])), target)
            note(f"  {procs} process(es): engine {eng:,.0f}/s, bare {bare:,.0f}/s")
        if args.quick:
            note("quick: no APScheduler peer (run without --quick for it)")
        if not args.no_apscheduler and not args.quick:
            configs = [(1, -1), (args.procs, -1), (args.procs, None)]
            for schedulers, grace in configs:
                r = apscheduler_run(url, db, n, schedulers, grace)
                aps.add(schedulers, "1 s (default)" if grace == -1 else "None", f"{r['rate']:,.0f}",
                        f"{r['executed']:,}", f"{r['missed']:,}", f"{r['duplicates']:,}", f"{r['never']:,}",
                        f"{r['errors']:,}", f"{r['died']} of {schedulers}" + (f" ({'; '.join(r['why'])})"
                                                                              if r["why"] else ""),
                        f"{rates[schedulers] / r['rate']:.1f}x")
                note(f"  APScheduler x{schedulers} grace {grace}: {r}")
        engine.close()
    table.print()
    if aps.rows:
        aps.print()
        note("APScheduler runs once per configuration (each run is seconds of jobs plus a fresh job store); "
             "its rate counts distinct timers whose effects were written, from the due moment to the last "
             "execution.")


if __name__ == "__main__":
    main()
