"""The APScheduler peer of bench/timers.py: one date job per timer in a shared SQLAlchemyJobStore.

Job functions must be importable by name (the job store pickles a reference), hence this
module. A job writes the same rows a fired breach timer writes (clock, history, outbox,
two escalation timers, the timer marked fired) in one transaction, on the same database.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa

_ENGINES: dict[str, sa.Engine] = {}
_LOCK = threading.Lock()


def _db(url: str) -> sa.Engine:
    with _LOCK:
        if url not in _ENGINES:
            from estateflow.engine._db import connect

            _ENGINES[url] = connect(url)
        return _ENGINES[url]


def breach_rows(timer_id: int, case_id: int, clock_id: int, due: datetime, now: datetime) -> dict[str, Any]:
    """The rows one fired breach timer writes (shared with the bare peer in timers.py)."""
    return {
        "clock": {"w_id": clock_id, "breached_at": due},
        "event": {"case_id": case_id, "kind": "clock_breach", "trigger": None, "from_state": None,
                  "to_state": None, "actor": "system", "on_behalf_of": None,
                  "data": {"clock": "response", "cycle": 1, "due_at": due.isoformat(), "soft": False}, "at": now},
        "outbox": {"case_id": case_id, "event": "breach", "channel": "log", "recipient": "worker", "language": "zh",
                   "subject": f"【已超时】case {case_id}", "body": f"case {case_id} was due at {due.isoformat()}",
                   "html": None, "payload": {"case": case_id, "event": "breach"},
                   "idempotency_key": f"t{timer_id}:worker", "status": "pending", "attempts": 0,
                   "next_attempt_at": now, "last_error": None, "created_at": now},
        "timers": [{"case_id": case_id, "clock_id": clock_id, "kind": "escalate", "step": step,
                    "due_at": due + timedelta(hours=1 + 24 * step), "status": "pending", "attempts": 0,
                    "payload": {"clock": "response"}, "created_at": now} for step in (0, 1)],
    }


def statements(dialect: str) -> dict[str, Any]:
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from estateflow.engine._schema import case_events, outbox, sla_clocks, timers

    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return {
        "clock": sla_clocks.update().where(sla_clocks.c.id == sa.bindparam("w_id")),
        "event": case_events.insert(),
        "outbox": insert(outbox).on_conflict_do_nothing(index_elements=["idempotency_key"]),
        "timers": timers.insert(),
        "fired": (timers.update().where(timers.c.id.in_(sa.bindparam("w_ids", expanding=True)))
                  .values(status="fired", fired_at=sa.bindparam("w_now"), claimed_by=sa.bindparam("w_worker"))),
    }


def fire_breach(url: str, timer_id: int, case_id: int, clock_id: int, due_iso: str) -> None:
    """The APScheduler job: one timer's effects, one transaction (no claim: the job store is the queue)."""
    db = _db(url)
    stmts = statements(db.dialect.name)
    now = datetime.now(timezone.utc)
    rows = breach_rows(timer_id, case_id, clock_id, datetime.fromisoformat(due_iso), now)
    with db.begin() as conn:
        conn.execute(stmts["clock"], [rows["clock"]])
        conn.execute(stmts["event"], [rows["event"]])
        conn.execute(stmts["outbox"], [rows["outbox"]])
        conn.execute(stmts["timers"], rows["timers"])
        conn.execute(stmts["fired"], {"w_ids": [timer_id], "w_now": now, "w_worker": "apscheduler"})


def scheduler_worker(url: str, grace: float | None, ready: Any, go: Any, results: Any) -> None:
    """One scheduler process: BackgroundScheduler on the shared job store, run until the store is empty."""
    import logging

    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # one warning per missed job otherwise
    from estateflow.engine._db import normalise_url

    store_url = normalise_url(url).render_as_string(hide_password=False)
    defaults = {} if grace == -1 else {"misfire_grace_time": grace}
    scheduler = BackgroundScheduler(jobstores={"default": SQLAlchemyJobStore(url=store_url)}, timezone="UTC",
                                    job_defaults=defaults)
    counts: dict[str, Any] = {"executed": 0, "missed": 0, "errors": 0, "last": 0.0, "died": []}
    lock = threading.Lock()

    def died(args: Any) -> None:  # a scheduler thread that raised stops running jobs for good
        counts["died"].append(args.exc_type.__name__)
    threading.excepthook = died

    def listen(event: Any) -> None:
        with lock:
            key = {EVENT_JOB_EXECUTED: "executed", EVENT_JOB_MISSED: "missed"}.get(event.code, "errors")
            counts[key] += 1
            counts["last"] = time.time()
    scheduler.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED | EVENT_JOB_ERROR)
    _db(url)  # connect before the start line, as a running daemon would have
    ready.set()
    go.wait()
    scheduler.start()
    probe = sa.create_engine(store_url)
    try:
        moved, previous = time.monotonic(), None
        while time.monotonic() - moved < 5:  # no job taken from the store for 5 s: it is stuck
            with probe.connect() as conn:
                left = conn.execute(sa.text("SELECT count(*) FROM apscheduler_jobs")).scalar()
            if not left:
                break
            if left != previous:
                moved, previous = time.monotonic(), left
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
        probe.dispose()
    results.put(dict(counts))
