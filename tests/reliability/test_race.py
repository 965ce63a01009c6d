"""Race: four daemons on one PostgreSQL share the timers; each timer fires exactly once.

Every ticket case has four clock timers (warning at 50%, breach, and two escalation steps
created when the breach fires), so N cases make 4N timers. The daemons' clock is set past
every deadline at once, so all four claim from the same due set at the same time, which is the
worst case for ``FOR UPDATE SKIP LOCKED``. Counted per cause: timer rows fired, history rows per
case and kind, outbox rows per timer (unique keys), and no timer left pending or parked.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.engine_helpers import at, make_engine, start_ticket, ticket_dir
from tests.reliability._oracle import _rows, pending_work, timer_effect_problems
from tests.reliability._procs import Daemon, VirtualClock
from tests.reliability.conftest import SIZES, sized

FAR = datetime(2025, 11, 30, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # after every ladder step
DAEMONS = 4


def seed(db_url: str, workflows, cases: int) -> None:
    """Open and start ``cases`` tickets (four threads: seeding is not what is measured)."""
    engine = make_engine(db_url, workflows)
    try:
        def one(i: int) -> None:
            start_ticket(engine, at(2025, 9, 26, 10, i % 60) + timedelta(microseconds=i))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(cases)))
    finally:
        engine.close()


@pytest.mark.parametrize("size", SIZES)
def test_four_daemons_fire_each_timer_exactly_once(size, pg_url, tmp_path, figures):
    timers = sized(size, 5_000, 100_000)
    cases = timers // 4
    workflows = ticket_dir(tmp_path)
    seed(pg_url, workflows, cases)
    clock = VirtualClock(tmp_path / "clock", FAR)
    started = time.monotonic()
    daemons = [Daemon(pg_url, workflows, clock, tmp_path / f"d{i}.log") for i in range(DAEMONS)]
    try:
        deadline = time.monotonic() + sized(size, 240, 3000)
        while pending_work(pg_url, FAR):
            assert all(d.alive() for d in daemons), "a daemon died"
            assert time.monotonic() < deadline, f"{pending_work(pg_url, FAR)} timers or messages left"
            time.sleep(0.5)
        elapsed = time.monotonic() - started
    finally:
        codes = [d.stop() for d in daemons]
    assert codes == [0] * DAEMONS

    fired = dict(_rows(pg_url, "SELECT kind, count(*) FROM timers WHERE status = 'fired' "
                               "AND case_id IS NOT NULL GROUP BY kind"))
    left = _rows(pg_url, "SELECT count(*) FROM timers WHERE status <> 'fired' AND case_id IS NOT NULL")[0][0]
    events = Counter((kind, n) for _, kind, n in _rows(
        pg_url, "SELECT case_id, kind, count(*) FROM case_events WHERE kind IN "
                "('clock_warning', 'clock_breach', 'escalation') GROUP BY case_id, kind"))
    messages, keys = _rows(pg_url, "SELECT count(*), count(DISTINCT idempotency_key) FROM outbox "
                                   "WHERE case_id IS NOT NULL")[0]
    shares = sorted(n for _, n in _rows(pg_url, "SELECT claimed_by, count(*) FROM timers "
                                                "WHERE case_id IS NOT NULL GROUP BY claimed_by"))
    problems = timer_effect_problems(pg_url)
    expected = {"clock_warning": 1, "clock_breach": 1, "escalation": 2}
    doubled = messages - keys + sum(max(n - expected[kind], 0) * c for (kind, n), c in events.items())
    total = sum(fired.values())
    figures(daemons=DAEMONS, timers=total, cases=cases, seconds=round(elapsed, 1),
            timers_per_second=round(total / elapsed), shares=shares, lost=timers - total, doubled=doubled)
    assert fired == {"warn": cases, "breach": cases, "escalate": 2 * cases}
    assert left == 0
    assert events == {("clock_warning", 1): cases, ("clock_breach", 1): cases, ("escalation", 2): cases}
    assert messages == keys == timers
    assert not problems, problems[:20]
    assert len(shares) == DAEMONS, f"the work was not shared by all {DAEMONS} daemons: {shares}"


def test_engines_loading_a_new_workflow_at_once_record_one_revision(pg_url, tmp_path):
    """Four daemons started together after a deploy all record the new file: one revision."""
    import threading

    from estateflow import Engine

    workflows = ticket_dir(tmp_path)
    Engine(pg_url, workflows, create=True).close()  # schema only: the revision is not recorded yet
    for attempt in range(3):  # a new file each round, so every round races on a new revision
        text = (workflows / "ticket.yaml").read_text(encoding="utf-8")
        (workflows / "ticket.yaml").write_text(text.replace(f'version: "{attempt + 1}"',
                                                            f'version: "{attempt + 2}"'), encoding="utf-8")
        engines = [Engine(pg_url, workflows) for _ in range(DAEMONS)]
        barrier = threading.Barrier(DAEMONS)
        errors: list[BaseException] = []

        def load(engine: Engine) -> None:
            barrier.wait()
            try:
                engine.load()
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
        threads = [threading.Thread(target=load, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for engine in engines:
            engine.close()
        assert not errors, errors[0]
    revisions = _rows(pg_url, "SELECT revision, version_label FROM workflow_versions WHERE name = 'ticket' "
                              "ORDER BY revision")
    assert [tuple(r) for r in revisions] == [(1, "2"), (2, "3"), (3, "4")]
