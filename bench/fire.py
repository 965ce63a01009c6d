"""Persisted transitions per second: Engine.fire() alternating park/unpark on ticket cases.

Each fire locks and reads the case, writes the case row and its history row, pauses or resumes
the ``response`` clock (a clock event row, the clock row, cancelling or scheduling the warning
and breach timers) — all in one committed transaction. Peers measured in the same run:

- *bare Core*: one SQLAlchemy Core transaction doing SELECT case + UPDATE case + INSERT
  history row on the same engine (same pool, pragmas, BEGIN IMMEDIATE), i.e. the minimum a
  persisted transition costs on that database;
- *transitions*: in-memory ``transitions.Machine`` with one model triggering park/unpark, the
  ceiling with no persistence at all.

    python3 bench/fire.py [--quick|--full] [--no-pg] [--profile]
"""

from __future__ import annotations

import cProfile
import io
import multiprocessing as mp
import pstats
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import (Postgres, StatementCounter, Table, at, attach_engine, median, note, parse_args,
                     print_header, spread, ticket_engine, verdict, workdir)

import sqlalchemy as sa

BASE = at(2025, 9, 22, 9, 30)  # a Monday; the virtual clock moves one second per fire
TARGET_RATE, TARGET_RATIO = 3000, 0.6


# -- the three workloads ---------------------------------------------------------------------------
def open_cases(engine: Any, n: int) -> list[int]:
    ids = []
    for i in range(n):
        case = engine.open("ticket", {"community": "east", "summary": f"lift noise {i}", "unit": f"3-{i}",
                                      "customer_name": "张三", "phone": "13800138000"}, actor="clerk", now=BASE)
        case = engine.fire(case.id, "start", actor="clerk", now=BASE,
                           data={"assignee": "worker", "department": "eng"})
        ids.append(case.id)
    return ids


def fire_rounds(engine: Any, ids: list[int], rounds: int, offset: int) -> int:
    """``rounds`` (even) rounds of park (even round) / unpark (odd round) over every case."""
    k = offset
    for r in range(rounds):
        trigger = "park" if r % 2 == 0 else "unpark"
        for case_id in ids:
            engine.fire(case_id, trigger, actor="worker", now=BASE + timedelta(seconds=k))
            k += 1
    return k


def core_rounds(db: sa.Engine, ids: list[int], rounds: int, offset: int) -> int:
    """The bare peer: SELECT + UPDATE + INSERT per transition, one transaction each."""
    from estateflow.engine._schema import case_events, cases

    pg = db.dialect.name == "postgresql"
    k = offset
    for r in range(rounds):
        source, dest = ("working", "waiting") if r % 2 == 0 else ("waiting", "working")
        for case_id in ids:
            now = BASE + timedelta(seconds=k)
            with db.begin() as conn:
                query = sa.select(cases).where(cases.c.id == case_id)
                row = conn.execute(query.with_for_update() if pg else query).one()
                conn.execute(cases.update().where(cases.c.id == case_id, cases.c.row_version == row.row_version)
                             .values(state=dest, row_version=row.row_version + 1, updated_at=now))
                conn.execute(case_events.insert().values(case_id=case_id, kind="bench", trigger="core",
                                                         from_state=source, to_state=dest, actor="worker",
                                                         data={}, at=now))
            k += 1
    return k


def prebuilt_rounds(db: sa.Engine, ids: list[int], rounds: int, offset: int) -> int:
    """The same transaction with statements built once (bindparam), executed with parameters."""
    from estateflow.engine._schema import case_events, cases

    pg = db.dialect.name == "postgresql"
    select = sa.select(cases).where(cases.c.id == sa.bindparam("cid"))
    select = select.with_for_update() if pg else select
    update = cases.update().where(cases.c.id == sa.bindparam("cid"), cases.c.row_version == sa.bindparam("v")) \
        .values(state=sa.bindparam("dest"), row_version=sa.bindparam("v") + 1, updated_at=sa.bindparam("now"))
    insert = case_events.insert()
    k = offset
    for r in range(rounds):
        source, dest = ("working", "waiting") if r % 2 == 0 else ("waiting", "working")
        for case_id in ids:
            now = BASE + timedelta(seconds=k)
            with db.begin() as conn:
                row = conn.execute(select, {"cid": case_id}).one()
                conn.execute(update, {"cid": case_id, "v": row.row_version, "dest": dest, "now": now})
                conn.execute(insert, {"case_id": case_id, "kind": "bench", "trigger": "core", "from_state": source,
                                      "to_state": dest, "actor": "worker", "data": {}, "at": now})
            k += 1
    return k


def dbapi_rounds(db: sa.Engine, ids: list[int], rounds: int, offset: int) -> int:
    """The same three statements on the raw driver connection (sqlite3 / psycopg), no SQLAlchemy."""
    from datetime import timezone

    from estateflow.engine._schema import cases

    pg = db.dialect.name == "postgresql"
    raw = db.raw_connection()
    p = "%s" if pg else "?"
    select = f"SELECT row_version, {', '.join(cases.c.keys())} FROM cases WHERE id = {p}"
    select += " FOR UPDATE" if pg else ""
    update = f"UPDATE cases SET state = {p}, row_version = {p}, updated_at = {p} WHERE id = {p} AND row_version = {p}"
    insert = (f"INSERT INTO case_events (case_id, kind, trigger, from_state, to_state, actor, data, at) "
              f"VALUES ({p}, 'bench', 'dbapi', {p}, {p}, 'worker', '{{}}', {p})")
    k = offset
    try:
        for r in range(rounds):
            source, dest = ("working", "waiting") if r % 2 == 0 else ("waiting", "working")
            for case_id in ids:
                now = (BASE + timedelta(seconds=k)).astimezone(timezone.utc)
                now = now if pg else now.replace(tzinfo=None).isoformat(" ")
                cur = raw.cursor()
                if not pg:
                    cur.execute("BEGIN IMMEDIATE")
                cur.execute(select, (case_id,))
                version = cur.fetchone()[0]
                cur.execute(update, (dest, version + 1, now, case_id, version))
                cur.execute(insert, (case_id, source, dest, now))
                cur.close()
                raw.commit() if pg else raw.execute("COMMIT")
                k += 1
    finally:
        raw.close()
    return k


def transitions_rate(count: int) -> float:
    from transitions import Machine

    class Model:
        pass

    model = Model()
    Machine(model=model, states=["working", "waiting"], initial="working", auto_transitions=False,
            transitions=[{"trigger": "park", "source": "working", "dest": "waiting"},
                         {"trigger": "unpark", "source": "waiting", "dest": "working"}])
    t0 = time.perf_counter()
    for _ in range(count // 2):
        model.park()
        model.unpark()
    return (count // 2 * 2) / (time.perf_counter() - t0)


# -- one process -----------------------------------------------------------------------------------
PEERS = {"core": core_rounds, "prebuilt": prebuilt_rounds, "dbapi": dbapi_rounds}


def single_process(engine: Any, ids: list[int], rounds: int, repeats: int) -> dict[str, Any]:
    """Repeats interleave the engine and its peers so drift (WAL growth, cache) hits all alike."""
    fires = len(ids) * rounds
    offset = 0
    results: dict[str, list[float]] = {"engine": [], **{name: [] for name in PEERS}, "transitions": []}
    counter = StatementCounter(engine.db)
    stmts: dict[str, float] = {}
    kinds: dict[str, float] = {}
    for rep in range(repeats):
        for name in ("engine", *PEERS):
            counter.active, counter.total = rep == 0, 0
            t0 = time.perf_counter()
            if name == "engine":
                offset = fire_rounds(engine, ids, rounds, offset)
            else:
                offset = PEERS[name](engine.db, ids, rounds, offset)
            results[name].append(fires / (time.perf_counter() - t0))
            if rep == 0:
                stmts[name] = counter.total / fires
                if name == "engine":
                    kinds = {k: v / fires for k, v in counter.kinds.items()}
        counter.active = False
        results["transitions"].append(transitions_rate(max(fires * 20, 100_000)))
    counter.close()
    return {"rates": results, "stmts": stmts, "kinds": kinds, "fires": fires}


# -- several processes (PostgreSQL) --------------------------------------------------------------------
def _worker(url: str, directory: str, ids: list[int], barrier: Any, inbox: Any, outbox: Any) -> None:
    engine = attach_engine(url, Path(directory))
    engine.workflows()
    while True:
        command = inbox.get()
        if command is None:
            break
        kind, rounds, offset = command
        barrier.wait()
        t0 = time.monotonic()
        if kind == "engine":
            fire_rounds(engine, ids, rounds, offset)
        else:
            PEERS[kind](engine.db, ids, rounds, offset)
        outbox.put((t0, time.monotonic()))
    engine.close()


def multi_process(url: str, directory: Path, ids: list[int], procs: int, rounds: int,
                  repeats: int) -> dict[str, list[float]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(procs)
    parts = [ids[i::procs] for i in range(procs)]
    inboxes = [ctx.Queue() for _ in range(procs)]
    outbox = ctx.Queue()
    workers = [ctx.Process(target=_worker, args=(url, str(directory), part, barrier, inbox, outbox))
               for part, inbox in zip(parts, inboxes)]
    for w in workers:
        w.start()
    fires = len(ids) * rounds
    results: dict[str, list[float]] = {"engine": [], **{name: [] for name in PEERS}}
    offset = 1_000_000  # a later stretch of the virtual clock (11 days on) than the single-process runs
    try:
        for _ in range(repeats):
            for kind in ("engine", *PEERS):
                for inbox in inboxes:
                    inbox.put((kind, rounds, offset))
                spans = [outbox.get(timeout=600) for _ in workers]
                wall = max(end for _, end in spans) - min(start for start, _ in spans)
                results[kind].append(fires / wall)
                offset += fires
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for w in workers:
            w.join(timeout=60)
    return results


# -- profile ---------------------------------------------------------------------------------------------
def profile(engine: Any, ids: list[int], rounds: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    fire_rounds(engine, ids, rounds, 2_000_000)  # 23 days on, still in 2025
    profiler.disable()
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = {}
    for (filename, _, fn), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        groups[_owner(filename, fn)] = groups.get(_owner(filename, fn), 0.0) + tottime
    total = sum(groups.values())
    share = Table(f"Where fire() spends its time (cProfile self time of {len(ids) * rounds} SQLite fires, "
                  "profiler overhead included)", ["owner", "share"])
    for owner, seconds in sorted(groups.items(), key=lambda kv: -kv[1]):
        share.add(owner, f"{seconds / total:.0%}")
    share.print()
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(25)
        note(f"\n## cProfile of {len(ids) * rounds} fires on SQLite, by {order}\n" + out.getvalue())


def _owner(filename: str, fn: str) -> str:
    if "sqlalchemy" in filename:
        return "SQLAlchemy (statement building, compile cache, execution, results)"
    if "sqlite3" in fn or "psycopg" in filename:
        return "database driver (sqlite3 C calls: execute, commit)"
    if "/estateflow/" in filename:
        return "estateflow code"
    if "/transitions/" in filename:
        return "transitions"
    if "json" in filename:
        return "json"
    return "other Python (stdlib, builtins, zoneinfo, ...)"


# -- main ------------------------------------------------------------------------------------------------
def main() -> None:
    args = parse_args(__doc__.splitlines()[0], lambda p: (
        p.add_argument("--no-pg", action="store_true", help="SQLite only"),
        p.add_argument("--profile", action="store_true", help="also cProfile the SQLite fire loop"),
        p.add_argument("--procs", type=int, default=4, help="processes for the PostgreSQL multi-process run")))
    print_header("fire.py", args)
    # (SQLite cases, PostgreSQL cases, rounds); the 4-process run uses twice the PostgreSQL cases, 4 rounds
    n_cases, pg_cases, rounds = (100, 50, 4) if args.quick else (1000, 500, 10) if args.full else (500, 250, 10)
    table = Table("Persisted transitions per second (park/unpark on ticket cases; median, min..max)",
                  ["backend", "engine.fire()/s", "bare Core/s", "fire/Core", "Core prebuilt/s", "raw DB-API/s",
                   "fire/DB-API", "transitions/s (ceiling)", "fire/ceiling", "stmts per fire (Core)", "targets"])
    breakdown: dict[str, Any] = {}

    def report(name: str, res: dict[str, Any], target_rate: float | None) -> None:
        r = {k: median(v) for k, v in res["rates"].items()}
        eng = r["engine"]
        ratio = eng / r["core"]
        target = f">= {TARGET_RATIO}x Core: {verdict(ratio >= TARGET_RATIO)}"
        if target_rate:
            target = f">= {target_rate:,}/s: {verdict(eng >= target_rate)}; " + target
        ceiling = r.get("transitions")
        stmts = res.get("stmts")
        table.add(name, f"{eng:,.0f} ({spread(res['rates']['engine'])})", f"{r['core']:,.0f}", f"{ratio:.2f}",
                  f"{r['prebuilt']:,.0f}", f"{r['dbapi']:,.0f}", f"{eng / r['dbapi']:.3f}",
                  f"{ceiling:,.0f}" if ceiling else "-", f"{eng / ceiling:.4f}" if ceiling else "-",
                  f"{stmts['engine']:.1f} ({stmts['core']:.0f})" if stmts else "-", target)

    with workdir("estateflow-bench-fire-") as tmp:
        note(f"SQLite: {n_cases} cases x {rounds} rounds = {n_cases * rounds} fires per repeat")
        engine = ticket_engine(f"sqlite:///{tmp / 'fire.db'}", tmp)
        ids = open_cases(engine, n_cases)
        res = single_process(engine, ids, rounds, args.repeats)
        report("SQLite, 1 process", res, TARGET_RATE)
        breakdown["SQLite"] = res["kinds"]
        if args.profile:
            profile(engine, ids, 4)
        engine.close()

        if not args.no_pg:
            with Postgres() as pg:
                note(f"PostgreSQL {pg.version()} {pg.settings()}")
                url = pg.new_database("fire")
                pg_dir = tmp / "pg"
                pg_dir.mkdir()
                engine = ticket_engine(url, pg_dir)
                note(f"PostgreSQL: {pg_cases} cases x {rounds} rounds = {pg_cases * rounds} fires per repeat; "
                     f"{args.procs} processes: {2 * pg_cases} cases x 4 rounds")
                ids = open_cases(engine, pg_cases * 2)
                res = single_process(engine, ids[:pg_cases], rounds, args.repeats)
                report("PostgreSQL, 1 process", res, None)
                breakdown["PostgreSQL"] = res["kinds"]
                engine.close()
                multi = multi_process(url, pg_dir, ids, args.procs, 4, args.repeats)
                report(f"PostgreSQL, {args.procs} processes", {"rates": multi}, None)

    table.print()
    kinds = sorted({k for b in breakdown.values() for k in b})
    detail = Table("Statements per fire, by kind (mean over park and unpark)", ["statement", *breakdown])
    for k in kinds:
        detail.add(k, *(f"{b.get(k, 0):.2f}" for b in breakdown.values()))
    detail.add("total", *(f"{sum(b.values()):.2f}" for b in breakdown.values()))
    detail.print()


if __name__ == "__main__":
    main()
