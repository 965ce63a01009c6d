"""SLA clock semantics: when a clock starts, pauses, resumes, stops, and which timers it owns.

Everything here runs inside the caller's transaction (a transition, a reassignment, a timer
firing), so a clock never disagrees with the case it belongs to. Due times are computed by the
calendar once, at start, resume or extension, and stored in UTC; timers are rows, so a
deadline survives any restart. A clock whose calendar has no data yet is recorded as
``awaiting_calendar`` instead of refusing the case, and gets its due time when the data comes.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._calendar import BusinessCalendar
from ._durations import Duration
from ._errors import CalendarDataMissing, ClockError, ExpressionError
from ._fields import to_json
from ._registry import Revision
from ._schema import sla_clocks, timers
from ._spec import ClockSpec, WorkflowSpec
from ._types import Case, ClockStatus

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["ClockRules", "ACTIVE"]

log = logging.getLogger(__name__)
ACTIVE = ("running", "paused", "awaiting_calendar")

# Prebuilt statements for the transition hot path: building ``.where(...).values(...)`` on every
# call cost more than executing it (bench/README.md).
_SELECT_ACTIVE = sa.select(sla_clocks).where(sla_clocks.c.case_id == sa.bindparam("w_case"),
                                             sla_clocks.c.status.in_(ACTIVE))
_UPDATE_CLOCK = sla_clocks.update().where(sla_clocks.c.id == sa.bindparam("w_id"))
_CANCEL_TIMERS = (timers.update().where(timers.c.clock_id == sa.bindparam("w_clock"), timers.c.status == "pending")
                  .values(status="cancelled", fired_at=sa.bindparam("w_now")))
_SENT_WARNINGS = sa.select(timers.c.step).where(timers.c.clock_id == sa.bindparam("w_clock"),
                                                timers.c.kind == "warn", timers.c.status == "fired")


def _update_clock(conn: sa.Connection, clock_id: int, **values: Any) -> None:
    conn.execute(_UPDATE_CLOCK, dict(values, w_id=clock_id))


class ClockRules:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- entry points from steps ---------------------------------------------------------
    def on_change(self, conn: sa.Connection, revision: Revision, case: Case, from_state: str | None,
                  to_state: str, trigger: str | None, now: datetime) -> None:
        spec = revision.spec
        if not spec.clocks:
            return
        points = set()
        if from_state != to_state or from_state is None:
            points.add(f"enter:{to_state}")
            if from_state is not None:
                points.add(f"leave:{from_state}")
        if trigger:
            points.add(f"trigger:{trigger}")
        active = self._active(conn, case.id)
        for name, clock in spec.clocks.items():
            row = active.get(name)
            if row is not None and points & set(clock.stop):
                self.stop(conn, case, row, now, reason="stop")
                row = None
            if row is not None and row.status == "running" and points & set(clock.pause):
                self._pause(conn, case, row, now)
            elif row is not None and row.status == "paused" and points & set(self._resume_points(clock)):
                self._resume(conn, spec, case, clock, row, now)
            if row is None and points & set(clock.start):
                self.start(conn, spec, case, name, clock, now)

    def on_reassign(self, conn: sa.Connection, revision: Revision, case: Case, actor: Any, now: datetime) -> None:
        """Reassigning to another department restarts that department's clocks as a new cycle."""
        spec = revision.spec
        active = self._active(conn, case.id)
        for name, clock in spec.clocks.items():
            if "reassign" in clock.restart_on and name in active:
                self.stop(conn, case, active[name], now, reason="reassigned")
                self.start(conn, spec, case, name, clock, now)

    def on_void(self, conn: sa.Connection, case: Case, now: datetime) -> None:
        for row in self._active(conn, case.id).values():
            self.stop(conn, case, row, now, reason="void")

    @staticmethod
    def _resume_points(clock: ClockSpec) -> list[str]:
        if clock.resume:
            return list(clock.resume)
        return [p.replace("enter:", "leave:", 1) for p in clock.pause if p.startswith("enter:")]

    # -- rows ----------------------------------------------------------------------------
    def _active(self, conn: sa.Connection, case_id: int) -> dict[str, Any]:
        rows = conn.execute(_SELECT_ACTIVE, {"w_case": case_id}).all()
        return {r.name: r for r in rows}

    def calendar_for(self, conn: sa.Connection, spec: WorkflowSpec, clock: ClockSpec,
                     data: Any) -> tuple[str, BusinessCalendar]:
        name = clock.calendar or spec.calendar
        if clock.calendar_field and data.get(clock.calendar_field):
            candidate = str(data[clock.calendar_field])
            if candidate in self.engine.calendar_set.base:
                name = candidate
            else:
                log.warning("calendar %r from field %s is unknown; using %r", candidate, clock.calendar_field, name)
        return name, self.engine.calendar_set.get(conn, name)

    def target_of(self, spec: WorkflowSpec, clock: ClockSpec, case: Case, now: datetime) -> Duration:
        text = clock.target
        if text.startswith("="):
            ctx = self.engine.steps.context(spec, self.engine.steps.case_dict(case), case.data, None, now)
            try:
                text = str(self.engine.steps.evaluate(spec, text, ctx))
            except ExpressionError as exc:
                raise ClockError(case.number, clock.label.en if clock.label else "?", exc.reason) from exc
        return Duration.parse(text)

    def start(self, conn: sa.Connection, spec: WorkflowSpec, case: Case, name: str, clock: ClockSpec,
              now: datetime, started_at: datetime | None = None) -> None:
        started_at = started_at or now
        cycle = (conn.execute(sa.select(sa.func.max(sla_clocks.c.cycle)).where(
            sla_clocks.c.case_id == case.id, sla_clocks.c.name == name)).scalar() or 0) + 1
        target = self.target_of(spec, clock, case, now)
        calendar_name, calendar = self.calendar_for(conn, spec, clock, case.data)
        try:
            due = calendar.add(started_at, target)
            status = "running"
        except CalendarDataMissing as exc:
            due, status = None, "awaiting_calendar"
            self.engine.notices.calendar_missing(conn, case, name, exc, now)
        clock_id = conn.execute(sla_clocks.insert().values(
            case_id=case.id, name=name, cycle=cycle, status=status, target=str(target), calendar=calendar_name,
            started_at=started_at, due_at=due, escalation_level=0, extensions=0, data={})
            .returning(sla_clocks.c.id)).scalar_one()
        self._event(conn, case, "clock_start", now, clock=name, cycle=cycle, target=str(target),
                    due_at=due.isoformat() if due else None, status=status)
        if due is not None:
            self.schedule(conn, spec, case, name, clock, clock_id, started_at, due, target, calendar, now)

    def schedule(self, conn: sa.Connection, spec: WorkflowSpec, case: Case, name: str, clock: ClockSpec,
                 clock_id: int, started_at: datetime, due: datetime, target: Duration,
                 calendar: BusinessCalendar, now: datetime) -> None:
        """Create the warning and breach timers of a running clock."""
        rows = []
        sent = set(conn.execute(_SENT_WARNINGS, {"w_clock": clock_id}).scalars())
        for i, warn in enumerate(clock.warn):
            if i in sent:  # a warning already sent in this cycle is not sent again after a pause
                continue
            at = self._warning_time(warn, started_at, due, target, calendar)
            if at is None or at >= due:
                continue
            if clock.warn_outside_hours == "defer":
                try:
                    at = min(calendar.next_business_start(at), due)
                except CalendarDataMissing:
                    pass
            rows.append(dict(kind="warn", step=i, due_at=at, payload={"warn": warn, "clock": name}))
        rows.append(dict(kind="breach", step=0, due_at=due, payload={"clock": name}))
        conn.execute(timers.insert(), [dict(r, case_id=case.id, clock_id=clock_id, status="pending",
                                            attempts=0, created_at=now) for r in rows])

    @staticmethod
    def _warning_time(warn: str, start: datetime, due: datetime, target: Duration,
                      calendar: BusinessCalendar) -> datetime | None:
        text = warn.strip()
        if text.endswith("%"):
            return calendar.at_fraction(start, target, float(text[:-1]) / 100)
        lead = Duration.parse(text[: -len(" before")])
        if not lead.is_working_time:
            return due - lead.as_timedelta() if lead.unit != "days" else due - timedelta(days=lead.amount)
        total = calendar.business_time_between(start, due)
        wanted = total - (lead.as_timedelta() if lead.unit != "working_days" else timedelta(0))
        if lead.unit == "working_days" or wanted <= timedelta(0):
            return start if wanted <= timedelta(0) else None
        return calendar.add(start, Duration(int(wanted.total_seconds() // 60), "business_minutes"))

    def cancel_timers(self, conn: sa.Connection, clock_id: int, now: datetime) -> None:
        conn.execute(_CANCEL_TIMERS, {"w_clock": clock_id, "w_now": now})

    def stop(self, conn: sa.Connection, case: Case, row: Any, now: datetime, *, reason: str) -> None:
        # Time spent paused (e.g. awaiting inspection) does not count against the target.
        counted_until = row.paused_at if row.status == "paused" and row.paused_at else now
        met = row.due_at is not None and counted_until <= row.due_at and row.breached_at is None
        conn.execute(sla_clocks.update().where(sla_clocks.c.id == row.id).values(
            status="stopped", stopped_at=now,
            data=dict(row.data or {}, reason=reason, met=met,
                      **({"counted_until": counted_until.isoformat()} if counted_until != now else {}))))
        self.cancel_timers(conn, row.id, now)
        self._event(conn, case, "clock_stop", now, clock=row.name, cycle=row.cycle, reason=reason, met=met)

    def _pause(self, conn: sa.Connection, case: Case, row: Any, now: datetime) -> None:
        _update_clock(conn, row.id, status="paused", paused_at=now)
        self.cancel_timers(conn, row.id, now)
        self._event(conn, case, "clock_pause", now, clock=row.name, cycle=row.cycle)

    def _resume(self, conn: sa.Connection, spec: WorkflowSpec, case: Case, clock: ClockSpec, row: Any,
                now: datetime) -> None:
        """Move the due time by the paused time, in the clock's own unit (see README)."""
        calendar = self.engine.calendar_set.get(conn, row.calendar)
        target = Duration.parse(row.target)
        due = row.due_at
        if due is not None and row.paused_at is not None:
            if target.unit == "working_days":
                days = calendar.closes_of_business_between(row.paused_at, now)
                due = calendar.add(due, Duration(days, "working_days")) if days else due
            elif target.is_working_time:
                paused = calendar.business_time_between(row.paused_at, now)
                due = calendar.add(due, Duration(int(paused.total_seconds() // 60), "business_minutes")) \
                    if paused else due
            else:
                due = due + (now - row.paused_at)
        _update_clock(conn, row.id, status="running", paused_at=None, due_at=due)
        self._event(conn, case, "clock_resume", now, clock=row.name, cycle=row.cycle,
                    old_due_at=row.due_at.isoformat() if row.due_at else None,
                    due_at=due.isoformat() if due else None)
        if due is not None and row.breached_at is None:
            self.schedule(conn, spec, case, row.name, clock, row.id, row.started_at, due, target, calendar, now)
        elif due is not None:
            self._resume_ladder(conn, clock, row, due, calendar, now)

    def _resume_ladder(self, conn: sa.Connection, clock: ClockSpec, row: Any, due: datetime,
                       calendar: BusinessCalendar, now: datetime) -> None:
        """A breached clock resumed: the ladder steps not yet taken continue from the moved due time."""
        self.schedule_ladder(conn, clock, row, due, calendar, now, from_level=row.escalation_level, floor=now)

    @classmethod
    def schedule_ladder(cls, conn: sa.Connection, clock: ClockSpec, row: Any, due: datetime,
                        calendar: BusinessCalendar, now: datetime, *, from_level: int = 0,
                        floor: datetime | None = None) -> None:
        """Escalation timers for steps ``from_level`` on, each ``after`` counted from ``due``."""
        rows = cls.ladder_rows(clock, row, due, calendar, now, from_level=from_level, floor=floor)
        if rows:
            conn.execute(timers.insert(), rows)

    @staticmethod
    def ladder_rows(clock: ClockSpec, row: Any, due: datetime, calendar: BusinessCalendar, now: datetime, *,
                    from_level: int = 0, floor: datetime | None = None) -> list[dict[str, Any]]:
        """The timer rows of :meth:`schedule_ladder`, not yet written (the timer loop batches them)."""
        if clock.soft:
            return []
        rows = []
        for i, step in enumerate(clock.escalate):
            if i < from_level:
                continue
            after = Duration.parse(step.after)
            at = calendar.add(due, after) if after.amount else due
            rows.append({"case_id": row.case_id, "clock_id": row.id, "kind": "escalate", "step": i,
                         "due_at": max(at, floor) if floor is not None else at, "status": "pending",
                         "attempts": 0, "payload": {"clock": row.name}, "created_at": now})
        return rows

    def _event(self, conn: sa.Connection, case: Case, kind: str, now: datetime, **data: Any) -> None:
        self.engine.store.add_event(conn, case_id=case.id, kind=kind, actor="system", data=to_json(data), at=now)

    # -- extension and reading -------------------------------------------------------------
    def extend(self, conn: sa.Connection, revision: Revision, case: Case, name: str, actor: Any,
               approved_by: str | None, new_due_at: datetime | None, add: str | None, now: datetime) -> ClockStatus:
        spec = revision.spec
        if name not in spec.clocks:
            raise ClockError(case.number, name, f"no such clock; known: {', '.join(spec.clocks) or 'none'}")
        clock = spec.clocks[name]
        if (new_due_at is None) == (add is None):
            raise ClockError(case.number, name, "give exactly one of new_due_at= or add=")
        if not approved_by or not str(approved_by).strip():
            who = clock.extension_requires or "an approver"
            raise ClockError(case.number, name, f"an extension needs recorded consent: approved_by= ({who})")
        row = self._active(conn, case.id).get(name)
        if row is None or row.status == "awaiting_calendar" or row.due_at is None:
            raise ClockError(case.number, name, "the clock is not running with a due time")
        calendar = self.engine.calendar_set.get(conn, row.calendar)
        due = new_due_at if new_due_at is not None else calendar.add(row.due_at, add)
        if due.tzinfo is None:
            raise ClockError(case.number, name, "new_due_at must be timezone-aware")
        if due <= row.due_at:
            raise ClockError(case.number, name, f"the new due time {due.isoformat()} is not later than "
                                                f"the current {row.due_at.isoformat()}")
        conn.execute(sla_clocks.update().where(sla_clocks.c.id == row.id).values(
            due_at=due, extensions=row.extensions + 1, breached_at=None, escalation_level=0))
        self.cancel_timers(conn, row.id, now)
        self.engine.store.add_event(conn, case_id=case.id, kind="clock_extend", actor=actor.id, at=now, data=to_json({
            "clock": name, "cycle": row.cycle, "old_due_at": row.due_at, "new_due_at": due,
            "approved_by": approved_by, "consent_of": clock.extension_requires}))
        if row.status == "running":
            self.schedule(conn, spec, case, name, clock, row.id, row.started_at, due,
                          Duration.parse(row.target), calendar, now)
        return self.status_of(conn, conn.execute(sa.select(sla_clocks).where(sla_clocks.c.id == row.id)).one(), now)

    def status_of(self, conn: sa.Connection, row: Any, now: datetime) -> ClockStatus:
        counted = (row.data or {}).get("counted_until")
        end = datetime.fromisoformat(counted) if counted else (row.stopped_at or row.paused_at or now)
        elapsed = max(end - row.started_at, timedelta(0))
        remaining = (row.due_at - end) if row.due_at is not None else None
        breached = row.breached_at is not None or (row.due_at is not None and end > row.due_at)
        return ClockStatus(row.case_id, row.name, row.cycle, row.status, row.target, row.calendar, row.started_at,
                           row.due_at, row.breached_at, row.stopped_at, row.escalation_level, elapsed, remaining,
                           breached, dict(row.data or {}))

    def recompute_calendar(self, conn: sa.Connection, calendar_name: str, now: datetime) -> int:
        """After the admin changed calendar data: new due times for every open clock on it."""
        rows = conn.execute(sa.select(sla_clocks).where(sla_clocks.c.calendar == calendar_name,
                                                        sla_clocks.c.status.in_(("running", "awaiting_calendar")),
                                                        sla_clocks.c.breached_at.is_(None))).all()
        calendar = self.engine.calendar_set.get(conn, calendar_name)
        changed = 0
        for row in rows:
            try:
                due = calendar.add(row.started_at, Duration.parse(row.target))
            except CalendarDataMissing:
                continue
            if due == row.due_at and row.status == "running":
                continue
            case_row = self.engine.store.load(conn, row.case_id)
            revision = self.engine.workflows().get(conn, case_row.workflow, case_row.revision)
            case = self.engine._case(conn, case_row)
            clock = revision.spec.clocks.get(row.name)
            conn.execute(sla_clocks.update().where(sla_clocks.c.id == row.id).values(status="running", due_at=due))
            self.cancel_timers(conn, row.id, now)
            self._event(conn, case, "clock_recomputed", now, clock=row.name, cycle=row.cycle,
                        old_due_at=row.due_at.isoformat() if row.due_at else None, due_at=due.isoformat(),
                        reason=f"calendar {calendar_name} changed")
            if clock is not None:
                self.schedule(conn, revision.spec, case, row.name, clock, row.id, row.started_at, due,
                              Duration.parse(row.target), calendar, now)
            changed += 1
        return changed
