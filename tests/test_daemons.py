"""Real daemon processes: several on one PostgreSQL, and one killed with SIGKILL mid-tick.

Daemons take their time from a clock file (a test-only option), so nothing waits for real
deadlines. The oracle is the database itself: each timer fired exactly once, and every
effect a timer has (history row, outbox row) exists exactly once per timer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.engine_helpers import at, make_engine, start_ticket, ticket_dir

FAR = "2025-11-30T12:00:00+08:00"  # after every breach and ladder step of the tickets below


def seed(db_url: str, tmp_path: Path, count: int) -> Path:
    workflows = ticket_dir(tmp_path)
    engine = make_engine(db_url, workflows)
    for i in range(count):
        start_ticket(engine, at(2025, 9, 26, 10, i % 60))
    engine.close()
    return workflows


def daemon(db_url: str, workflows: Path, clock_file: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "estateflow", "--db", db_url, "--workflows", str(workflows), "run",
         "--interval", "0.2", "--clock-file", str(clock_file)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def pending(db_url: str) -> int:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM timers WHERE status = 'pending' AND case_id IS NOT NULL")).scalar()
    finally:
        engine.dispose()


def wait_until_drained(db_url: str, procs: list[subprocess.Popen], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while pending(db_url) and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), "a daemon died"
        time.sleep(0.3)
    assert pending(db_url) == 0


def assert_exactly_once(db_url: str, cases: int) -> None:
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        fired = conn.execute(sa.text("SELECT kind, count(*) FROM timers WHERE status='fired' AND case_id IS NOT NULL GROUP BY kind")).all()
        assert dict(fired) == {"warn": cases, "breach": cases, "escalate": 2 * cases}
        per_case = conn.execute(sa.text(
            "SELECT case_id, kind, count(*) FROM case_events WHERE kind IN "
            "('clock_warning','clock_breach','escalation') GROUP BY case_id, kind")).all()
        assert len(per_case) == 3 * cases
        assert {(k, n) for _, k, n in per_case} == {("clock_warning", 1), ("clock_breach", 1), ("escalation", 2)}
        messages = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT idempotency_key) FROM outbox WHERE case_id IS NOT NULL")).one()
        assert messages[0] == messages[1] == 4 * cases
    engine.dispose()


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            assert p.wait(timeout=30) == 0
        except subprocess.TimeoutExpired:
            p.kill()
            raise


def test_three_daemons_on_postgresql_fire_each_timer_exactly_once(pg_url, tmp_path):
    cases = 400
    workflows = seed(pg_url, tmp_path, cases)
    clock_file = tmp_path / "clock"
    clock_file.write_text(FAR)
    procs = [daemon(pg_url, workflows, clock_file, tmp_path / f"d{i}.log") for i in range(3)]
    try:
        wait_until_drained(pg_url, procs)
    finally:
        stop(procs)
    assert_exactly_once(pg_url, cases)
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        workers = conn.execute(sa.text("SELECT count(DISTINCT claimed_by) FROM timers WHERE case_id IS NOT NULL")).scalar()
    engine.dispose()
    assert workers >= 2, "the work was not shared between daemons"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_daemon_killed_mid_tick_loses_and_doubles_nothing_after_restart(backend, request, tmp_path):
    db_url = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")
    cases = 300
    workflows = seed(db_url, tmp_path, cases)
    clock_file = tmp_path / "clock"
    clock_file.write_text(FAR)
    first = daemon(db_url, workflows, clock_file, tmp_path / "first.log")
    total = 4 * cases
    deadline = time.monotonic() + 120
    while pending(db_url) > total // 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert pending(db_url) > 0, "the daemon finished before it could be killed"
    # leases of the killed daemon expire after 2 minutes of (virtual) time: move the clock on
    clock_file.write_text("2025-11-30T12:05:00+08:00")
    second = daemon(db_url, workflows, clock_file, tmp_path / "second.log")
    try:
        wait_until_drained(db_url, [second])
    finally:
        stop([second])
    assert_exactly_once(db_url, cases)


def test_daemon_wakes_at_the_next_due_time_instead_of_waiting_for_its_poll_interval(sqlite_url, tmp_path):
    """Real time on purpose (firing lag is the behaviour): timers due a few seconds from now fire
    within a generous 1.5 s of their due time although the daemon polls only every 60 s."""
    from datetime import datetime, timedelta, timezone

    from estateflow.engine._schema import timers

    workflows = seed(sqlite_url, tmp_path, 4)
    engine = sa.create_engine(sqlite_url)
    start = datetime.now(timezone.utc)
    with engine.begin() as conn:
        ids = conn.execute(sa.text("SELECT id FROM timers WHERE kind='warn' ORDER BY id")).scalars().all()
        due = {timer_id: start + timedelta(seconds=3 + 1.5 * i) for i, timer_id in enumerate(ids)}
        for timer_id, when in due.items():
            conn.execute(timers.update().where(timers.c.id == timer_id).values(due_at=when))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "estateflow", "--db", sqlite_url, "--workflows", str(workflows),
                             "run", "--interval", "60"], stdout=(tmp_path / "d.log").open("w"),
                            stderr=subprocess.STDOUT, env=env)
    seen: dict[int, datetime] = {}
    pending_at_first_tick: set[int] | None = None
    try:
        deadline = time.monotonic() + 30
        while len(seen) < len(ids) and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "d.log").read_text()
            with engine.connect() as conn:
                ticked = conn.execute(sa.text("SELECT count(*) FROM heartbeats")).scalar()
                fired = conn.execute(sa.text("SELECT id FROM timers WHERE kind='warn' AND status='fired'")).scalars()
                now = datetime.now(timezone.utc)
                for timer_id in fired:
                    seen.setdefault(timer_id, now)
            if ticked and pending_at_first_tick is None:
                pending_at_first_tick = set(ids) - set(seen)
            time.sleep(0.05)
    finally:
        stop([proc])
        engine.dispose()
    assert sorted(seen) == sorted(ids), "not every timer fired within 30 s"
    assert pending_at_first_tick, "the daemon started too slowly to test anything"
    for timer_id in pending_at_first_tick:  # known at the first tick, due later: fired on time
        lag = (seen[timer_id] - due[timer_id]).total_seconds()
        assert -0.1 < lag < 1.5, f"timer {timer_id} fired {lag:.2f} s after its due time"
