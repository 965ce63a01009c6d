"""Claiming and firing due timers, exactly once, on every backend.

Two short transactions per batch (TRAPS.md, PostgreSQL lock order):

1. *claim*: mark up to ``batch`` due timers with this worker's id and a lease, in due order
   (``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several daemons split the work; on SQLite the
   write lock taken by ``BEGIN IMMEDIATE`` makes the claim a compare-and-set).
2. *fire*: for each claimed timer, lock its case row first, re-check the timer is still pending
   and ours (a transition may have cancelled it meanwhile), apply its effects and mark it fired
   — all in one commit. A timer that raises is rolled back to its savepoint and retried alone
   later; after ``max_attempts`` it is parked with an alert, never blocking its batch.

A worker that dies between 1 and 2 leaves leased rows; the lease expires and another tick
reclaims them, so nothing is lost, and because step 2 marks the row fired in the same commit
as its effects, nothing is done twice.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._errors import EstateflowError
from ._schema import heartbeats, sla_clocks, timers

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["TickResult", "TimerRunner", "worker_id"]

log = logging.getLogger(__name__)

# Prebuilt statements for the per-timer path (see bench/README.md on statement building).
_TIMER_CASE = sa.select(timers.c.case_id).where(timers.c.id == sa.bindparam("w_id"))
_TIMER = sa.select(timers).where(timers.c.id == sa.bindparam("w_id"))
_MARK_FIRED = (timers.update().where(timers.c.id == sa.bindparam("w_id"))
               .values(status="fired", fired_at=sa.bindparam("w_now"), claimed_by=sa.bindparam("w_worker")))


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class TickResult:
    """What one tick did; ``fired`` lists (timer id, kind, case number)."""

    fired: list[tuple[int, str, str]] = field(default_factory=list)
    system: list[tuple[int, str]] = field(default_factory=list)  # recurring jobs with no case
    failed: list[tuple[int, str]] = field(default_factory=list)
    parked: list[int] = field(default_factory=list)
    skipped: int = 0
    delivered: int = 0

    @property
    def count(self) -> int:
        return len(self.fired)


class TimerRunner:
    def __init__(self, engine: Engine, *, worker: str | None = None, lease: timedelta = timedelta(minutes=2),
                 max_attempts: int = 3) -> None:
        self.engine = engine
        self.worker = worker or worker_id()
        self.lease = lease
        self.max_attempts = max_attempts

    # -- claim --------------------------------------------------------------------------------
    def claim(self, now: datetime, batch: int) -> list[int]:
        due = (sa.select(timers.c.id)
               .where(timers.c.status == "pending", timers.c.due_at <= now,
                      sa.or_(timers.c.lease_until.is_(None), timers.c.lease_until < now))
               .order_by(timers.c.due_at, timers.c.id).limit(batch))
        with self.engine.db.begin() as conn:
            if conn.dialect.name == "postgresql":
                ids = conn.execute(due.with_for_update(skip_locked=True)).scalars().all()
            else:
                ids = conn.execute(due).scalars().all()
            if ids:
                conn.execute(timers.update().where(timers.c.id.in_(ids))
                             .values(claimed_by=self.worker, lease_until=now + self.lease))
        return list(ids)

    # -- fire ---------------------------------------------------------------------------------
    def tick(self, now: datetime, *, limit: int | None = None, batch: int = 200) -> TickResult:
        """Fire everything due at ``now`` (in due order), at most ``limit`` timers."""
        result = TickResult()
        remaining = limit
        while remaining is None or remaining > 0:
            size = batch if remaining is None else min(batch, remaining)
            ids = self.claim(now, size)
            if not ids:
                break
            self.fire_batch(ids, now, result)
            if remaining is not None:
                remaining -= len(ids)
        self.heartbeat(now, result)
        return result

    def fire_batch(self, ids: list[int], now: datetime, result: TickResult) -> None:
        after: list[tuple[str, Any, Any]] = []
        with self.engine.db.begin() as conn:
            conn.info["estateflow_after"] = after
            for timer_id in ids:
                savepoint = conn.begin_nested()
                try:
                    fired = self.fire_one(conn, timer_id, now)
                    savepoint.commit()
                except Exception as exc:  # one bad timer must not block the batch
                    savepoint.rollback()
                    self._failed(conn, timer_id, exc, now, result)
                    continue
                if fired is None:
                    result.skipped += 1
                elif fired[2] == "-":
                    result.system.append((fired[0], fired[1]))
                else:
                    result.fired.append(fired)
                    log.info("fired timer %d (%s) of %s", fired[0], fired[1], fired[2])
            conn.info.pop("estateflow_after", None)
        self.engine._emit(after)

    def _failed(self, conn: sa.Connection, timer_id: int, exc: Exception, now: datetime, result: TickResult) -> None:
        row = conn.execute(sa.select(timers.c.attempts).where(timers.c.id == timer_id)).first()
        attempts = (row.attempts if row else 0) + 1
        parked = attempts >= self.max_attempts
        message = f"{type(exc).__name__}: {exc}"[:2000]
        conn.execute(timers.update().where(timers.c.id == timer_id).values(
            attempts=attempts, last_error=message, claimed_by=None,
            lease_until=None if parked else now + timedelta(seconds=30 * attempts),
            status="parked" if parked else "pending"))
        result.failed.append((timer_id, message))
        if parked:
            result.parked.append(timer_id)
            log.error("timer %d parked after %d attempts: %s", timer_id, attempts, message)
            self.engine.notices.system_alert(
                conn, key=f"parked:{timer_id}", now=now, recipients=("role:admin",),
                subject=f"【定时任务失败】timer {timer_id} parked after {attempts} attempts",
                body=f"Timer {timer_id} could not fire: {message}. See 'estateflow status'; fix the cause, "
                     f"then set it back to pending.")
        else:
            log.warning("timer %d failed (attempt %d): %s", timer_id, attempts, message)
        if not isinstance(exc, EstateflowError):
            log.debug("timer %d traceback", timer_id, exc_info=exc)

    def fire_one(self, conn: sa.Connection, timer_id: int, now: datetime) -> tuple[int, str, str] | None:
        head = conn.execute(_TIMER_CASE, {"w_id": timer_id}).first()
        if head is None:
            return None
        case_row = self.engine.store.load(conn, head.case_id, for_update=True) if head.case_id else None
        timer = conn.execute(_TIMER, {"w_id": timer_id}).first()
        if timer is None or timer.status != "pending" or timer.claimed_by != self.worker:
            return None
        number = case_row.number if case_row is not None else "-"
        if timer.kind in ("warn", "breach", "escalate"):
            self._clock_timer(conn, timer, case_row, now)
        else:
            handler = self.engine.timer_handlers.get(timer.kind)
            if handler is None:
                raise LookupError(f"no handler for timer kind {timer.kind!r}")
            handler(conn, timer, now)
        conn.execute(_MARK_FIRED, {"w_id": timer_id, "w_now": now, "w_worker": self.worker})
        return timer.id, timer.kind + (f"#{timer.step}" if timer.kind == "escalate" else ""), number

    # -- clock timers -------------------------------------------------------------------------
    def _clock_timer(self, conn: sa.Connection, timer: Any, case_row: Any, now: datetime) -> None:
        clock_row = conn.execute(sa.select(sla_clocks).where(sla_clocks.c.id == timer.clock_id)).one()
        revision = self.engine.workflows().get(conn, case_row.workflow, case_row.revision)
        spec = revision.spec
        clock = spec.clocks.get(clock_row.name)
        case = self.engine._case(conn, case_row)
        notices = self.engine.notices
        steps = self.engine.steps
        if clock is None:
            return
        cause = f"t{timer.id}"
        if timer.kind == "warn":
            targets = ["assignee"] + ([] if case.assignee else ["role:cs_clerk"])
            notices.clock_notice(conn, spec, case, event="warning", template="warning", recipients=targets,
                                 clock=clock_row.name, due_at=clock_row.due_at, level=0, cause=cause, now=now)
            self._history(conn, case, "clock_warning", now, clock=clock_row.name, cycle=clock_row.cycle,
                          warn=timer.payload.get("warn"), due_at=clock_row.due_at.isoformat())
            steps.after(conn, "warning", case, {"clock": clock_row.name, "due_at": clock_row.due_at})
            return
        if timer.kind == "breach":
            conn.execute(sla_clocks.update().where(sla_clocks.c.id == clock_row.id).values(breached_at=clock_row.due_at))
            self._history(conn, case, "clock_breach", now, clock=clock_row.name, cycle=clock_row.cycle,
                          due_at=clock_row.due_at.isoformat(), soft=clock.soft)
            targets = ["assignee"] + ([] if case.assignee else ["role:cs_clerk"])
            notices.clock_notice(conn, spec, case, event="breach", template="breach", recipients=targets,
                                 clock=clock_row.name, due_at=clock_row.due_at, level=0, cause=cause, now=now)
            calendar = self.engine.calendar_set.get(conn, clock_row.calendar)
            self.engine.clock_rules.schedule_ladder(conn, clock, clock_row, clock_row.due_at, calendar, now)
            steps.after(conn, "breach", case, {"clock": clock_row.name, "due_at": clock_row.due_at})
            return
        self._escalate(conn, spec, clock, clock_row, timer, case, now)

    def _escalate(self, conn: sa.Connection, spec: Any, clock: Any, clock_row: Any, timer: Any, case: Any,
                  now: datetime) -> None:
        step = clock.escalate[timer.step] if timer.step < len(clock.escalate) else None
        if step is None:
            return
        level = timer.step + 1
        conn.execute(sla_clocks.update().where(sla_clocks.c.id == clock_row.id).values(escalation_level=level))
        changes: dict[str, Any] = {}
        if step.priority or step.mark_major or step.reassign_to:
            values: dict[str, Any] = {"updated_at": now}
            if step.priority:
                values["priority"] = changes["priority"] = step.priority
            if step.mark_major:
                values["major"] = changes["major"] = True
            if step.reassign_to:
                values["assignee"] = changes["assignee"] = step.reassign_to
            from ._fields import to_json
            from ._schema import cases

            fields = spec.fields
            data = dict(case.data)
            data.update({k: v for k, v in changes.items() if k in fields})
            conn.execute(cases.update().where(cases.c.id == case.id).values(
                row_version=cases.c.row_version + 1, data=to_json(data), **values))
        self._history(conn, case, "escalation", now, clock=clock_row.name, cycle=clock_row.cycle, level=level,
                      notify=list(step.notify), **changes)
        if step.notify:
            self.engine.notices.clock_notice(conn, spec, case, event="escalation",
                                             template=step.template or "escalation", recipients=step.notify,
                                             clock=clock_row.name, due_at=clock_row.due_at, level=level,
                                             cause=f"t{timer.id}", now=now)
        if step.fire:
            from ._types import SYSTEM

            self.engine.steps.fire(conn, case.id, step.fire, SYSTEM, {}, now, None)
        self.engine.steps.after(conn, "escalation", case, {"clock": clock_row.name, "level": level})

    def _history(self, conn: sa.Connection, case: Any, kind: str, now: datetime, **data: Any) -> None:
        self.engine.store.add_event(conn, case_id=case.id, kind=kind, actor="system", data=data, at=now)

    # -- heartbeat ------------------------------------------------------------------------------
    def heartbeat(self, now: datetime, result: TickResult) -> None:
        info = {"fired": result.count, "failed": len(result.failed), "pid": os.getpid()}
        with self.engine.db.begin() as conn:
            updated = conn.execute(heartbeats.update().where(heartbeats.c.worker == self.worker)
                                   .values(last_tick_at=now, info=info)).rowcount
            if not updated:
                conn.execute(heartbeats.insert().values(worker=self.worker, started_at=now, last_tick_at=now,
                                                        info=info))
