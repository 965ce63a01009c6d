"""Engine.tick(): time to fire 1,000 due timers among 10k, 100k (and 1M with --full) stored cases.

Cases, their running ``response`` clocks and timers are seeded in bulk with SQLAlchemy Core
(not through the API). Every case has a pending warning and a pending breach timer; exactly
1,000 warnings are due at ``now``, everything else is due in the following days. The database
grows from one size to the next (the same 1,000 due timers, more pending ones around them).
Between repeats the fired timers are set back to pending and the outbox and history rows the
tick wrote are deleted. With --quick, PostgreSQL runs at the smallest size only. Peers, same
run: the tick at the smallest size (the ratio shows how the cost grows with the table), and
the bare claim query (the due-timer SELECT the tick starts with).

    python3 bench/tick.py [--quick|--full] [--no-pg] [--profile]
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import cProfile
import io
import pstats

from _common import (Postgres, StatementCounter, Table, at, fix_sequences, median, note, parse_args,
                     print_header, spread, ticket_engine, vacuum, verdict, workdir)

import sqlalchemy as sa

NOW = at(2025, 9, 24, 10, 0)  # a Wednesday; the clocks started Monday 09:00
STARTED = at(2025, 9, 22, 9, 0)
DUE = 1000
CHUNK = 20_000
TARGET_SECONDS, TARGET_RATIO = 1.0, 1.5


def seed(engine: Any, first: int, last: int, due_every: int | None) -> None:
    """Cases ``first``..``last``-1 (ids first+1..), one running clock and two timers each.

    With ``due_every``, every ``due_every``-th case's warning is due (in the hour before NOW).
    """
    from estateflow.engine._schema import cases, sla_clocks, timers

    revision = engine.workflows().get(None, "ticket").revision
    clock_due = at(2025, 9, 25, 18, 0)
    db = engine.db
    with db.connect() as conn:  # the tick adds timers of its own (calendar_check)
        next_timer = (conn.execute(sa.select(sa.func.max(timers.c.id))).scalar() or 0) + 1
    for lo in range(first, last, CHUNK):
        hi = min(lo + CHUNK, last)
        case_rows, clock_rows, timer_rows = [], [], []
        for i in range(lo, hi):
            cid = i + 1
            number = f"TK-east-2025-{cid:07d}"
            case_rows.append({
                "id": cid, "number": number, "workflow": "ticket", "revision": revision, "state": "working",
                "community": "east", "building": None, "unit": f"3-{i % 3000}", "category": None,
                "department": "eng", "assignee": "worker", "priority": "normal", "major": False,
                "data": {"community": "east", "summary": f"lift noise {i}", "unit": f"3-{i % 3000}",
                         "customer_name": "张三", "phone": "13800138000", "assignee": "worker",
                         "department": "eng"},
                "search_text": f"{number} 张三 13800138000 3-{i % 3000}".lower(),
                "received_at": STARTED, "created_at": STARTED, "updated_at": STARTED, "closed_at": None,
                "voided": False, "row_version": 2})
            clock_rows.append({
                "id": cid, "case_id": cid, "name": "response", "cycle": 1, "status": "running",
                "target": "3 working days", "calendar": "cn", "started_at": STARTED, "due_at": clock_due,
                "paused_at": None, "stopped_at": None, "breached_at": None, "escalation_level": 0,
                "extensions": 0, "data": {}})
            is_due = due_every is not None and i % due_every == 0
            warn_at = NOW - timedelta(seconds=1 + i // due_every) if is_due \
                else NOW + timedelta(days=1, seconds=i % 86_400)
            for step, (kind, when, payload) in enumerate((
                    ("warn", warn_at, {"warn": "50%", "clock": "response"}),
                    ("breach", clock_due + timedelta(days=1, seconds=i % 86_400), {"clock": "response"}))):
                timer_rows.append({
                    "id": next_timer, "case_id": cid, "clock_id": cid, "kind": kind, "step": 0,
                    "due_at": when, "status": "pending", "claimed_by": None, "lease_until": None, "attempts": 0,
                    "last_error": None, "payload": payload, "created_at": STARTED, "fired_at": None})
                next_timer += 1
        with db.begin() as conn:
            conn.execute(cases.insert(), case_rows)
            conn.execute(sla_clocks.insert(), clock_rows)
            conn.execute(timers.insert(), timer_rows)
    fix_sequences(db)


def reset(engine: Any, due_ids: list[int]) -> None:
    """Undo what a tick did, so the next repeat fires the same 1,000 timers."""
    from estateflow.engine._schema import case_events, heartbeats, outbox, timers

    with engine.db.begin() as conn:
        conn.execute(timers.update().where(timers.c.id.in_(due_ids)).values(
            status="pending", claimed_by=None, lease_until=None, fired_at=None, attempts=0, last_error=None))
        conn.execute(timers.delete().where(timers.c.kind.not_in(("warn", "breach"))))  # calendar_check
        conn.execute(outbox.delete())
        conn.execute(case_events.delete())
        conn.execute(heartbeats.delete())
    vacuum(engine.db)  # dead rows of the previous repeat would slow the next one (PostgreSQL only)


def due_timer_ids(engine: Any) -> list[int]:
    from estateflow.engine._schema import timers

    with engine.db.connect() as conn:
        return list(conn.execute(sa.select(timers.c.id).where(timers.c.status == "pending",
                                                               timers.c.due_at <= NOW)).scalars())


def claim_query_seconds(engine: Any) -> float:
    """The tick's claim SELECT alone (what scans the timers table), for the whole due set."""
    from estateflow.engine._schema import timers

    query = (sa.select(timers.c.id).where(timers.c.status == "pending", timers.c.due_at <= NOW,
                                          sa.or_(timers.c.lease_until.is_(None), timers.c.lease_until < NOW))
             .order_by(timers.c.due_at, timers.c.id).limit(DUE))
    with engine.db.connect() as conn:
        conn.execute(query).all()
        t0 = time.perf_counter()
        for _ in range(5):
            ids = conn.execute(query).scalars().all()
        elapsed = (time.perf_counter() - t0) / 5
    assert len(ids) == DUE, len(ids)
    return elapsed


def run_backend(name: str, url: str, directory: Any, sizes: list[int], repeats: int, table: Table,
                profile: bool = False) -> None:
    engine = ticket_engine(url, directory)
    engine.workflows()
    seeded = 0
    base: float | None = None
    for size in sizes:
        t0 = time.perf_counter()
        seed(engine, seeded, size, (size // DUE) if seeded == 0 else None)
        note(f"{name}: seeded {size - seeded:,} cases (+{2 * (size - seeded):,} timers) in "
             f"{time.perf_counter() - t0:.1f} s")
        seeded = size
        due_ids = due_timer_ids(engine)
        assert len(due_ids) == DUE, len(due_ids)
        seconds, firing, counts, delivered = [], [], [], []
        counter = StatementCounter(engine.db)
        for rep in range(repeats):
            reset(engine, due_ids)
            counter.active = rep == 0
            t0 = time.perf_counter()  # engine.tick(NOW), in its two parts: fire the timers, then deliver
            result = engine.tick(NOW, deliver=False)
            t1 = time.perf_counter()
            counter.active = False
            result.delivered = len(engine.deliver(NOW).sent)
            seconds.append(time.perf_counter() - t0)
            firing.append(t1 - t0)
            counts.append(result.count)
            delivered.append(result.delivered)
        counter.close()
        if profile and size == sizes[0]:
            reset(engine, due_ids)
            profiler = cProfile.Profile()
            profiler.runcall(engine.tick, NOW)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(30)
            note(f"\n## cProfile of one {name} tick at {size:,} cases\n{out.getvalue()}")
        reset(engine, due_ids)  # the claim query needs the due timers pending again
        claim = claim_query_seconds(engine)
        tick = median(seconds)
        base = base or tick
        ratio = tick / base
        table.add(name, f"{size:,}", f"{tick:.2f} ({spread(seconds)})", f"{median(firing):.2f}",
                  f"{median(firing) / DUE * 1000:.2f}",
                  f"{min(counts):,}/{max(delivered)}",
                  f"{counter.total / DUE:.1f}", f"{claim * 1000:.1f}", f"{ratio:.2f}",
                  f"< {TARGET_SECONDS:g} s: {verdict(tick < TARGET_SECONDS)}; ratio <= {TARGET_RATIO}: "
                  f"{verdict(ratio <= TARGET_RATIO)}")
    engine.close()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--no-pg", action="store_true", help="SQLite only"),
        p.add_argument("--profile", action="store_true", help="cProfile one tick at the smallest size")))
    print_header("tick.py", args)
    sizes = [10_000, 100_000, 1_000_000] if args.full else [10_000, 30_000] if args.quick else [10_000, 100_000]
    pg_sizes = sizes[:1] if args.quick else sizes
    table = Table("engine.tick() firing 1,000 due warnings (median, min..max)",
                  ["backend", "stored cases", "tick s (fire + deliver)", "fire s", "fire ms per timer",
                   "fired/delivered", "stmts per fired timer",
                   "claim query ms",
                   f"tick / tick at {sizes[0]:,}", "targets"])
    with workdir("estateflow-bench-tick-") as tmp:
        (tmp / "sqlite").mkdir()
        run_backend("SQLite", f"sqlite:///{tmp / 'sqlite' / 'tick.db'}", tmp / "sqlite", sizes, args.repeats, table,
                    args.profile)
        if not args.no_pg:
            (tmp / "pg").mkdir()
            with Postgres() as pg:
                run_backend("PostgreSQL", pg.new_database("tick"), tmp / "pg", pg_sizes, args.repeats, table)
    table.print()
    note("fired/delivered: timers fired by the tick / outbox messages delivered by its deliver step "
         "(at most 500 per tick by default; one transaction per message, so that a crash resends at most one). "
         "Statements are counted while firing only.")


if __name__ == "__main__":
    main()
