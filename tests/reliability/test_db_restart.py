"""Database restarts: PostgreSQL restarted, and stopped for a while, under a running daemon.

The test gets its own PostgreSQL server (tests/pgserver.py), so restarting it disturbs no other
test. First the server is restarted (``pg_ctl restart -m fast``) while the daemon is firing a
burst of warnings; then it is stopped while breaches and escalations fall due, and started
again. The daemon must log the failures, stay the same process, reconnect by itself, and fire
every timer exactly once, including those that fell due during the outage.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests import pgserver
from tests.conftest import _new_pg_database
from tests.reliability._oracle import _rows, pending_work, timer_effect_problems
from tests.reliability._procs import Daemon, VirtualClock
from tests.reliability.test_race import FAR, seed
from tests.engine_helpers import ticket_dir

CASES = 300


@pytest.fixture(scope="module")
def own_pg() -> Iterator[pgserver.PgServer]:
    server = pgserver.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(os.path.dirname(server.datadir), ignore_errors=True)


def start_again(server: pgserver.PgServer) -> None:
    """``pg_ctl start`` with the options pgserver.start() used (restart would reuse them)."""
    base = os.path.dirname(server.datadir)
    opts = (f"-p {server.port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c shared_buffers=128MB")
    server.pg_ctl("start", "-l", os.path.join(base, "log"), "-o", opts)


def wait_for(condition, what: str, daemon: Daemon, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert daemon.alive(), daemon.output()[-3000:]
        assert time.monotonic() < deadline, f"{what}:\n{daemon.output()[-3000:]}"
        time.sleep(0.2)


def fired(url: str, kind: str) -> int:
    return _rows(url, "SELECT count(*) FROM timers WHERE status = 'fired' AND kind = :k", k=kind)[0][0]


def test_daemon_reconnects_after_restart_and_outage(own_pg, tmp_path, figures):
    url = _new_pg_database(own_pg.url("postgres"))
    workflows = ticket_dir(tmp_path)
    seed(url, workflows, CASES)
    last_warning = _rows(url, "SELECT max(due_at) FROM timers WHERE kind = 'warn'")[0][0]
    first_breach = _rows(url, "SELECT min(due_at) FROM timers WHERE kind = 'breach'")[0][0]
    assert last_warning < first_breach
    clock = VirtualClock(tmp_path / "clock", last_warning - timedelta(days=2))
    daemon = Daemon(url, workflows, clock, tmp_path / "daemon.log")
    try:
        daemon.wait_started()
        # 1. a burst of warnings; restart the server while the daemon works through it
        clock.set(last_warning + timedelta(minutes=1))
        time.sleep(0.3)
        own_pg.restart()
        clock.advance(timedelta(minutes=3))  # leases of a batch cut short expire
        wait_for(lambda: fired(url, "warn") == CASES, "warnings after the restart", daemon)
        # 2. the server is down while every breach and escalation falls due
        own_pg.pg_ctl("stop", "-m", "fast")
        clock.set(FAR)
        outage_ticks_from = len(daemon.output())
        time.sleep(2.0)
        start_again(own_pg)
        clock.advance(timedelta(minutes=3))
        wait_for(lambda: pending_work(url, clock.now) == 0, "timers due during the outage", daemon)
        errors_logged = daemon.output()[outage_ticks_from:].count("tick failed")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output()[-3000:]

    counts = {kind: fired(url, kind) for kind in ("warn", "breach", "escalate")}
    problems = timer_effect_problems(url)
    messages, keys = _rows(url, "SELECT count(*), count(DISTINCT idempotency_key) FROM outbox "
                                "WHERE case_id IS NOT NULL")[0]
    figures(restarts=1, outages=1, outage_seconds=2.0, timers=sum(counts.values()), errors_logged=errors_logged,
            lost=4 * CASES - sum(counts.values()), doubled=messages - keys + sum(1 for p in problems if "has" in p))
    assert counts == {"warn": CASES, "breach": CASES, "escalate": 2 * CASES}
    assert not problems, problems[:20]
    assert messages == keys == 4 * CASES
    assert errors_logged >= 1, "the outage went unnoticed in the log"
    assert "StorageError" in daemon.output() or "OperationalError" in daemon.output()
