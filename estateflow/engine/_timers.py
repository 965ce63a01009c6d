"""Claiming and firing due timers, exactly once, on every backend.

Two short transactions per batch (TRAPS.md, PostgreSQL lock order):

1. *claim*: mark up to ``batch`` due timers with this worker's id and a lease, in due order, in
   one ``UPDATE … RETURNING`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL so several daemons split
   the work; on SQLite the write lock taken by ``BEGIN IMMEDIATE`` makes the claim a
   compare-and-set).
2. *fire*: lock the batch's case rows first (in id order), re-check each timer is still pending
   and ours (a transition may have cancelled it meanwhile), apply its effects and mark it fired
   — all in one commit.

Why the fire step is batched: one statement per table per batch instead of ~10 round trips
per timer (bench/README.md, tick and timers). Each timer's effects are still all or nothing:
they are computed into an :class:`_Effects` buffer first, a timer that raises while computing
has its rows dropped from the buffer (and is retried alone later; after ``max_attempts`` it
is parked with an alert, never blocking its batch). Timers whose effects cannot be buffered
(an escalation step that fires a transition, handler timers, a second timer of a case already
in the batch) run after the flush, one by one in a savepoint each, as before. If writing the
buffered rows fails, the whole batch rolls back and is redone one timer per savepoint, so a
bad row only fails its own timer.

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
from ._fields import to_json
from ._schema import case_events, cases, heartbeats, sla_clocks, timers

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["TickResult", "TimerRunner", "worker_id"]

log = logging.getLogger(__name__)
CLOCK_KINDS = ("warn", "breach", "escalate")

# Prebuilt statements (building Core statements per call cost more than running them:
# bench/README.md). ``w_ids`` are expanding IN lists.
_IDS = sa.bindparam("w_ids", expanding=True)
_TIMER_CASE = sa.select(timers.c.case_id).where(timers.c.id == sa.bindparam("w_id"))
_TIMER = sa.select(timers).where(timers.c.id == sa.bindparam("w_id"))
_MARK_FIRED = (timers.update().where(timers.c.id.in_(_IDS))
               .values(status="fired", fired_at=sa.bindparam("w_now"), claimed_by=sa.bindparam("w_worker")))
_BATCH_TIMERS = sa.select(timers).where(timers.c.id.in_(_IDS))
_BATCH_CLOCKS = sa.select(sla_clocks).where(sla_clocks.c.id.in_(_IDS))
_BATCH_CASES = (sa.select(cases).where(cases.c.id.in_(sa.select(timers.c.case_id).where(timers.c.id.in_(_IDS))))
                .order_by(cases.c.id))
_LOCK_CASES = {"postgresql": _BATCH_CASES.with_for_update(), "sqlite": _BATCH_CASES}
_CLOCK = sa.select(sla_clocks).where(sla_clocks.c.id == sa.bindparam("w_id"))
_UPDATE_CLOCK = sla_clocks.update().where(sla_clocks.c.id == sa.bindparam("w_id"))
_INSERT_EVENT = case_events.insert()
_INSERT_TIMER = timers.insert()


def _claim_statement(dialect: str) -> Any:
    now = sa.bindparam("w_now", type_=timers.c.due_at.type)
    due = (sa.select(timers.c.id)
           .where(timers.c.status == "pending", timers.c.due_at <= now,
                  sa.or_(timers.c.lease_until.is_(None), timers.c.lease_until < now))
           .order_by(timers.c.due_at, timers.c.id).limit(sa.bindparam("w_limit")))
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    return (timers.update().where(timers.c.id.in_(due))
            .values(claimed_by=sa.bindparam("w_worker"), lease_until=sa.bindparam("w_lease"))
            .returning(timers.c.id, timers.c.due_at))


_CLAIM = {name: _claim_statement(name) for name in ("postgresql", "sqlite")}
_CASE_UPDATES: dict[frozenset[str], Any] = {}
_NEXT_DUE = sa.select(sa.func.min(timers.c.due_at)).where(
    timers.c.status == "pending", timers.c.due_at > sa.bindparam("w_after", type_=timers.c.due_at.type))


def _case_update(keys: frozenset[str]) -> Any:
    stmt = _CASE_UPDATES.get(keys)
    if stmt is None:
        stmt = _CASE_UPDATES[keys] = (
            cases.update().where(cases.c.id == sa.bindparam("w_id"))
            .values({"row_version": cases.c.row_version + 1,
                     **{k: sa.bindparam(f"v_{k}", type_=cases.c[k].type) for k in sorted(keys)}}))
    return stmt


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

    def add(self, other: TickResult) -> None:
        self.fired += other.fired
        self.system += other.system
        self.failed += other.failed
        self.parked += other.parked
        self.skipped += other.skipped


class _Effects:
    """The rows firing timers write, gathered so that a batch writes each table once.

    ``mark``/``undo`` drop the rows of one timer that raised halfway, which is what keeps a
    timer's effects all or nothing without a savepoint per timer.
    """

    def __init__(self, engine: Engine, now: datetime, worker: str) -> None:
        self.engine = engine
        self.now = now
        self.worker = worker
        self.events: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.timers: list[dict[str, Any]] = []
        self.clocks: list[dict[str, Any]] = []
        self.cases: list[dict[str, Any]] = []
        self.fired: list[int] = []
        self.after: list[Any] = []

    def _lists(self) -> tuple[list[Any], ...]:
        return self.events, self.outbox, self.timers, self.clocks, self.cases, self.fired, self.after

    def mark(self) -> tuple[int, ...]:
        return tuple(len(rows) for rows in self._lists())

    def undo(self, mark: tuple[int, ...]) -> None:
        for rows, size in zip(self._lists(), mark):
            del rows[size:]

    def event(self, case_id: int, kind: str, data: dict[str, Any]) -> None:
        self.events.append({"case_id": case_id, "kind": kind, "trigger": None, "from_state": None,
                            "to_state": None, "actor": "system", "on_behalf_of": None, "data": data,
                            "at": self.now})

    def flush(self, conn: sa.Connection) -> None:
        """Write everything gathered (case rows first: the lock order of TRAPS.md)."""
        for statement, rows in (*_grouped(self.cases, _case_update), *_grouped(self.clocks, lambda _: _UPDATE_CLOCK)):
            conn.execute(statement, rows)
        if self.events:
            conn.execute(_INSERT_EVENT, self.events)
        if self.outbox:
            self.engine.notices.insert(conn, self.outbox)
        if self.timers:
            conn.execute(_INSERT_TIMER, self.timers)
        if self.fired:
            conn.execute(_MARK_FIRED, {"w_ids": self.fired, "w_now": self.now, "w_worker": self.worker})
        pending = conn.info.get("estateflow_after")
        if pending is not None:
            pending.extend(self.after)
        for rows in self._lists():
            rows.clear()


def _grouped(rows: list[dict[str, Any]], statement: Any) -> list[tuple[Any, list[dict[str, Any]]]]:
    """executemany needs the same keys in every row: one statement per set of columns."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(k[2:] for k in row if k.startswith("v_")) or frozenset(row), []).append(row)
    return [(statement(keys), group) for keys, group in groups.items()]


class TimerRunner:
    def __init__(self, engine: Engine, *, worker: str | None = None, lease: timedelta = timedelta(minutes=2),
                 max_attempts: int = 3) -> None:
        self.engine = engine
        self.worker = worker or worker_id()
        self.lease = lease
        self.max_attempts = max_attempts

    # -- claim --------------------------------------------------------------------------------
    def claim(self, now: datetime, batch: int) -> list[int]:
        """Lease up to ``batch`` due timers to this worker; their ids in due order."""
        with self.engine.db.begin() as conn:
            rows = conn.execute(_CLAIM[conn.dialect.name], {"w_now": now, "w_limit": batch, "w_worker": self.worker,
                                                           "w_lease": now + self.lease}).all()
        return [r.id for r in sorted(rows, key=lambda r: (r.due_at, r.id))]

    def next_due(self, after: datetime) -> datetime | None:
        """The earliest due time of a pending timer later than ``after`` (the daemon sleeps until then).

        Timers due at or before ``after`` that are still pending are leased to another worker or
        backing off after a failure; the daemon's poll interval covers those.
        """
        with self.engine._read_db.connect() as conn:
            return conn.execute(_NEXT_DUE, {"w_after": after}).scalar()

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
        """Fire claimed timers: together when possible, one per savepoint when a write fails."""
        try:
            part, after = self._fire_together(ids, now)
        except Exception as exc:  # e.g. a constraint or trigger refusing one timer's rows
            log.warning("batch of %d timers failed as a whole (%s: %s); firing them one by one",
                        len(ids), type(exc).__name__, exc)
            part, after = self._fire_each(ids, now)
        result.add(part)
        for timer_id, kind, number in part.fired:
            log.info("fired timer %d (%s) of %s", timer_id, kind, number)
        self.engine._emit(after)

    def _fire_together(self, ids: list[int], now: datetime) -> tuple[TickResult, list[Any]]:
        part, after = TickResult(), []
        fx = _Effects(self.engine, now, self.worker)
        calendars: dict[str, Any] = {}
        with self.engine.db.begin() as conn:
            conn.info["estateflow_after"] = after
            try:
                case_rows = {r.id: r for r in conn.execute(_LOCK_CASES[conn.dialect.name], {"w_ids": ids})}
                timer_rows = {r.id: r for r in conn.execute(_BATCH_TIMERS, {"w_ids": ids})}
                clock_ids = sorted({t.clock_id for t in timer_rows.values() if t.clock_id is not None})
                clock_rows = {r.id: r for r in conn.execute(_BATCH_CLOCKS, {"w_ids": clock_ids})} if clock_ids else {}
                alone: list[int] = []  # fired after the flush, one savepoint each
                seen: set[int] = set()
                for timer_id in ids:
                    timer = timer_rows.get(timer_id)
                    if timer is None or timer.status != "pending" or timer.claimed_by != self.worker:
                        part.skipped += 1
                        continue
                    case_row, clock_row = case_rows.get(timer.case_id), clock_rows.get(timer.clock_id)
                    if timer.case_id in seen or not self._bufferable(conn, timer, case_row, clock_row):
                        alone.append(timer_id)
                        if timer.case_id is not None:
                            seen.add(timer.case_id)
                        continue
                    seen.add(timer.case_id)
                    mark = fx.mark()
                    try:
                        self._clock_timer(conn, timer, case_row, clock_row, fx, calendars)
                    except Exception as exc:  # one bad timer must not block the batch
                        fx.undo(mark)
                        self._failed(conn, timer_id, exc, now, part)
                        continue
                    fx.fired.append(timer_id)
                    part.fired.append(self._label(timer, case_row))
                fx.flush(conn)
                for timer_id in alone:
                    self._fire_alone(conn, timer_id, now, part)
            finally:
                conn.info.pop("estateflow_after", None)
        order = {timer_id: i for i, timer_id in enumerate(ids)}
        part.fired.sort(key=lambda f: order[f[0]])
        return part, after

    def _fire_each(self, ids: list[int], now: datetime) -> tuple[TickResult, list[Any]]:
        part, after = TickResult(), []
        with self.engine.db.begin() as conn:
            conn.info["estateflow_after"] = after
            try:
                for timer_id in ids:
                    self._fire_alone(conn, timer_id, now, part)
            finally:
                conn.info.pop("estateflow_after", None)
        return part, after

    def _fire_alone(self, conn: sa.Connection, timer_id: int, now: datetime, result: TickResult) -> None:
        savepoint = conn.begin_nested()
        try:
            fired = self.fire_one(conn, timer_id, now)
            savepoint.commit()
        except Exception as exc:  # one bad timer must not block the batch
            savepoint.rollback()
            self._failed(conn, timer_id, exc, now, result)
            return
        if fired is None:
            result.skipped += 1
        elif fired[2] == "-":
            result.system.append((fired[0], fired[1]))
        else:
            result.fired.append(fired)

    def _bufferable(self, conn: sa.Connection, timer: Any, case_row: Any, clock_row: Any) -> bool:
        """Clock timers whose every effect is a row in the buffer (not a transition of their own)."""
        if timer.kind not in CLOCK_KINDS or case_row is None or clock_row is None:
            return False
        if timer.kind != "escalate":
            return True
        spec = self.engine.workflows().get(conn, case_row.workflow, case_row.revision).spec
        clock = spec.clocks.get(clock_row.name)
        return clock is None or timer.step >= len(clock.escalate) or not clock.escalate[timer.step].fire

    @staticmethod
    def _label(timer: Any, case_row: Any) -> tuple[int, str, str]:
        number = case_row.number if case_row is not None else "-"
        return timer.id, timer.kind + (f"#{timer.step}" if timer.kind == "escalate" else ""), number

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
        """Fire one claimed timer on its own (its statements run at once, in the caller's savepoint)."""
        head = conn.execute(_TIMER_CASE, {"w_id": timer_id}).first()
        if head is None:
            return None
        case_row = self.engine.store.load(conn, head.case_id, for_update=True) if head.case_id else None
        timer = conn.execute(_TIMER, {"w_id": timer_id}).first()
        if timer is None or timer.status != "pending" or timer.claimed_by != self.worker:
            return None
        fx = _Effects(self.engine, now, self.worker)
        if timer.kind in CLOCK_KINDS:
            clock_row = conn.execute(_CLOCK, {"w_id": timer.clock_id}).one()
            self._clock_timer(conn, timer, case_row, clock_row, fx, {})
        else:
            handler = self.engine.timer_handlers.get(timer.kind)
            if handler is None:
                raise LookupError(f"no handler for timer kind {timer.kind!r}")
            handler(conn, timer, now)
        fx.fired.append(timer.id)
        fx.flush(conn)
        return self._label(timer, case_row)

    # -- clock timers -------------------------------------------------------------------------
    def _clock_timer(self, conn: sa.Connection, timer: Any, case_row: Any, clock_row: Any, fx: _Effects,
                     calendars: dict[str, Any]) -> None:
        """Gather a warning, breach or escalation timer's effects into ``fx``."""
        revision = self.engine.workflows().get(conn, case_row.workflow, case_row.revision)
        spec = revision.spec
        clock = spec.clocks.get(clock_row.name)
        if clock is None:
            return
        case = self.engine._case(conn, case_row)
        notices = self.engine.notices
        now = fx.now
        cause = f"t{timer.id}"
        if timer.kind == "warn":
            targets = ["assignee"] + ([] if case.assignee else ["role:cs_clerk"])
            fx.outbox += notices.clock_rows(spec, case, event="warning", template="warning", recipients=targets,
                                            clock=clock_row.name, due_at=clock_row.due_at, level=0, cause=cause,
                                            now=now)
            fx.event(case.id, "clock_warning", {"clock": clock_row.name, "cycle": clock_row.cycle,
                                                "warn": timer.payload.get("warn"),
                                                "due_at": clock_row.due_at.isoformat()})
            fx.after.append(("warning", case, {"clock": clock_row.name, "due_at": clock_row.due_at}))
            return
        if timer.kind == "breach":
            fx.clocks.append({"w_id": clock_row.id, "breached_at": clock_row.due_at})
            fx.event(case.id, "clock_breach", {"clock": clock_row.name, "cycle": clock_row.cycle,
                                               "due_at": clock_row.due_at.isoformat(), "soft": clock.soft})
            targets = ["assignee"] + ([] if case.assignee else ["role:cs_clerk"])
            fx.outbox += notices.clock_rows(spec, case, event="breach", template="breach", recipients=targets,
                                            clock=clock_row.name, due_at=clock_row.due_at, level=0, cause=cause,
                                            now=now)
            calendar = calendars.get(clock_row.calendar)
            if calendar is None:
                calendar = calendars[clock_row.calendar] = self.engine.calendar_set.get(conn, clock_row.calendar)
            fx.timers += self.engine.clock_rules.ladder_rows(clock, clock_row, clock_row.due_at, calendar, now)
            fx.after.append(("breach", case, {"clock": clock_row.name, "due_at": clock_row.due_at}))
            return
        self._escalate(conn, spec, clock, clock_row, timer, case, fx)

    def _escalate(self, conn: sa.Connection, spec: Any, clock: Any, clock_row: Any, timer: Any, case: Any,
                  fx: _Effects) -> None:
        step = clock.escalate[timer.step] if timer.step < len(clock.escalate) else None
        if step is None:
            return
        level = timer.step + 1
        fx.clocks.append({"w_id": clock_row.id, "escalation_level": level})
        changes: dict[str, Any] = {}
        if step.priority or step.mark_major or step.reassign_to:
            values: dict[str, Any] = {"updated_at": fx.now}
            if step.priority:
                values["priority"] = changes["priority"] = step.priority
            if step.mark_major:
                values["major"] = changes["major"] = True
            if step.reassign_to:
                values["assignee"] = changes["assignee"] = step.reassign_to
            data = dict(case.data)
            data.update({k: v for k, v in changes.items() if k in spec.fields})
            values["data"] = to_json(data)
            fx.cases.append({"w_id": case.id, **{f"v_{k}": v for k, v in values.items()}})
        fx.event(case.id, "escalation", {"clock": clock_row.name, "cycle": clock_row.cycle, "level": level,
                                         "notify": list(step.notify), **changes})
        if step.notify:
            fx.outbox += self.engine.notices.clock_rows(
                spec, case, event="escalation", template=step.template or "escalation", recipients=step.notify,
                clock=clock_row.name, due_at=clock_row.due_at, level=level, cause=f"t{timer.id}", now=fx.now)
        if step.fire:
            from ._types import SYSTEM

            fx.flush(conn)  # the transition reads and bumps the case row these updates touch
            self.engine.steps.fire(conn, case.id, step.fire, SYSTEM, {}, fx.now, None)
        fx.after.append(("escalation", case, {"clock": clock_row.name, "level": level}))

    # -- heartbeat ------------------------------------------------------------------------------
    def heartbeat(self, now: datetime, result: TickResult) -> None:
        info = {"fired": result.count, "failed": len(result.failed), "pid": os.getpid()}
        with self.engine.db.begin() as conn:
            updated = conn.execute(heartbeats.update().where(heartbeats.c.worker == self.worker)
                                   .values(last_tick_at=now, info=info)).rowcount
            if not updated:
                conn.execute(heartbeats.insert().values(worker=self.worker, started_at=now, last_tick_at=now,
                                                        info=info))
