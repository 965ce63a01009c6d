"""What the database must look like after faults: the oracle of the reliability suite.

Every check reads rows directly (not through the engine): a timer's effects are its history
row and its outbox row, committed with marking it fired, so on any backend and after any kill

* each fired clock timer has exactly one history row of its kind and exactly one outbox row
  (the relay workflow addresses every clock notice to one recipient), and
* no outbox row exists for a timer that is not fired (that would be a torn commit);
* each transition history row has exactly one outbox notice (``c{case}:v{version}:n0``).

The connection pool is ``NullPool`` so that a test which restarts PostgreSQL never trips over
a connection of its own.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

__all__ = ["db", "outbox_stats", "pending_work", "timer_effect_problems", "transition_log",
           "transition_notice_problems"]

_KIND_OF_EVENT = {"clock_warning": "warn", "clock_breach": "breach", "escalation": "escalate"}
_TIMER_KEY = re.compile(r"^t(\d+):")
_TRANSITION_KEY = re.compile(r"^c(\d+):v(\d+):n0:")


@lru_cache(maxsize=None)
def db(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def _rows(url: str, sql: str, **params: Any) -> list[Any]:
    with db(url).connect() as conn:
        return conn.execute(sa.text(sql), params).all()


def timer_effect_problems(url: str) -> list[str]:
    """Fired timers without exactly one history row and one outbox row each, and orphans."""
    problems = []
    fired = _rows(url, "SELECT id, case_id, kind FROM timers WHERE status = 'fired' AND case_id IS NOT NULL")
    fired_ids = {r.id for r in fired}
    expected = Counter((r.case_id, r.kind) for r in fired)
    events = Counter((r.case_id, _KIND_OF_EVENT[r.kind]) for r in _rows(
        url, "SELECT case_id, kind FROM case_events WHERE kind IN ('clock_warning','clock_breach','escalation')"))
    for key in sorted(set(expected) | set(events)):
        if expected[key] != events[key]:
            problems.append(f"case {key[0]}: {expected[key]} fired {key[1]} timers but {events[key]} history rows")
    per_timer: Counter[int] = Counter()
    for (key,) in _rows(url, "SELECT idempotency_key FROM outbox WHERE idempotency_key LIKE 't%'"):
        match = _TIMER_KEY.match(key)
        if match:
            per_timer[int(match[1])] += 1
    for timer_id, count in per_timer.items():
        if timer_id not in fired_ids:
            problems.append(f"outbox row for timer {timer_id}, which is not fired (torn commit)")
        elif count != 1:
            problems.append(f"timer {timer_id} has {count} outbox rows")
    for timer_id in fired_ids - set(per_timer):
        problems.append(f"fired timer {timer_id} has no outbox row")
    return problems


def transition_log(url: str) -> dict[int, list[tuple[str, str | None, str | None, datetime]]]:
    """Per case, the opened/transition history rows in order: (kind, trigger, to_state, at)."""
    log: dict[int, list[tuple[str, str | None, str | None, datetime]]] = defaultdict(list)
    from estateflow.engine._schema import case_events

    with db(url).connect() as conn:
        rows = conn.execute(sa.select(case_events.c.case_id, case_events.c.kind, case_events.c.trigger,
                                      case_events.c.to_state, case_events.c.at)
                            .where(case_events.c.kind.in_(("opened", "transition")))
                            .order_by(case_events.c.id)).all()
    for r in rows:
        log[r.case_id].append((r.kind, r.trigger, r.to_state, r.at))
    return dict(log)


def transition_notice_problems(url: str) -> list[str]:
    """Each transition row has one notice to the ops room, and each notice a transition."""
    transitions = Counter(r.case_id for r in _rows(url, "SELECT case_id FROM case_events WHERE kind = 'transition'"))
    notices: Counter[int] = Counter()
    for (key,) in _rows(url, "SELECT idempotency_key FROM outbox WHERE idempotency_key LIKE 'c%'"):
        match = _TRANSITION_KEY.match(key)
        if match:
            notices[int(match[1])] += 1
    return [f"case {case}: {transitions[case]} transitions but {notices[case]} notices"
            for case in sorted(set(transitions) | set(notices)) if transitions[case] != notices[case]]


def outbox_stats(url: str) -> dict[str, Any]:
    total, distinct = _rows(url, "SELECT count(*), count(DISTINCT idempotency_key) FROM outbox")[0]
    by_status = dict(_rows(url, "SELECT status, count(*) FROM outbox GROUP BY status"))
    sent = {r.idempotency_key: r.channel for r in _rows(
        url, "SELECT idempotency_key, channel FROM outbox WHERE status = 'sent'")}
    return {"total": total, "distinct": distinct, "by_status": by_status, "sent": sent}


def pending_work(url: str, now: datetime) -> int:
    """Clock timers due by ``now`` not yet fired, plus outbox rows not yet sent or dead."""
    from estateflow.engine._schema import timers

    with db(url).connect() as conn:
        due = conn.execute(sa.select(sa.func.count()).where(
            timers.c.status == "pending", timers.c.case_id.is_not(None), timers.c.due_at <= now)).scalar()
    messages = _rows(url, "SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0]
    return due + messages
