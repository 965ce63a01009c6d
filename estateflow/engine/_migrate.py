"""Moving open cases to another revision of their workflow: planned, previewable, in batches.

Why explicit: editing a workflow file never moves a running case (a case keeps the rules it
started under). When an admin does want running cases on the new rules, each case's state must
have a place in the new revision and each running clock must follow the new clock rules. The
plan is computed by one function for both the preview (``dry_run``) and the real run, so the
preview shows exactly what the run does; the real run re-plans each case from its locked row
inside its batch's transaction, so a ``fire()`` that lands in between is never lost.

Clock rules (through :class:`ClockRules`, never by hand):

- a clock the new revision no longer has is **stopped** (reason ``migrated``);
- a clock whose target (or calendar) changes gets its due time **recomputed** from its start
  with the new target on its calendar; time it already gained by an extension or a pause is
  carried over; its timers are rebuilt (a recomputed breach already past stays breached and its
  ladder continues);
- a clock whose warnings or ladder change (same target) is **rescheduled**: same due time, new timers;
- a clock new in the target revision whose start is ``enter:`` the case's state is **started**.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from ._durations import Duration
from ._errors import CalendarDataMissing, MigrationError, RoleNotAllowed
from ._fields import from_json
from ._registry import Revision
from ._schema import cases, sla_clocks
from ._store import row_to_case
from ._versions import parse_revision

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["CaseMove", "ClockChange", "MigrationPlan", "migrate"]


@dataclass(frozen=True)
class ClockChange:
    clock: str
    action: str  # stopped, recomputed, rescheduled, started
    old_due: datetime | None
    new_due: datetime | None
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"clock": self.clock, "action": self.action, "target": self.target,
                "old_due": self.old_due.isoformat() if self.old_due else None,
                "new_due": self.new_due.isoformat() if self.new_due else None}


@dataclass(frozen=True)
class CaseMove:
    case_id: int
    number: str
    from_revision: int
    to_revision: int
    from_state: str
    to_state: str
    clocks: tuple[ClockChange, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"case": self.number, "from_revision": self.from_revision, "to_revision": self.to_revision,
                "from_state": self.from_state, "to_state": self.to_state,
                "clocks": [c.to_json() for c in self.clocks]}


@dataclass(frozen=True)
class MigrationPlan:
    """What a migration does (``dry_run``) or did: one move per case, in case order."""

    workflow: str
    to_revision: int
    dry_run: bool
    moves: tuple[CaseMove, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (number, why): changed meanwhile into an unplaceable state
    batches: int = 0
    at: datetime | None = None

    @property
    def target(self) -> str:
        return f"{self.workflow}@r{self.to_revision}"

    def to_json(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "to": self.target, "dry_run": self.dry_run, "batches": self.batches,
                "at": self.at.isoformat() if self.at else None, "moves": [m.to_json() for m in self.moves],
                "skipped": [{"case": n, "reason": r} for n, r in self.skipped]}


def _is_open() -> Any:
    return sa.and_(cases.c.closed_at.is_(None), cases.c.voided.is_(False))


class _Migration:
    def __init__(self, engine: Engine, name: str, to: int, state_map: Mapping[str, str], now: datetime) -> None:
        self.engine = engine
        self.name = name
        self.to = to
        self.state_map = dict(state_map)
        self.now = now
        self.rules = engine.clock_rules
        self.registry = engine.workflows()
        self.target: Revision | None = None

    # -- checks before anything is written --------------------------------------------------
    def check(self, conn: sa.Connection) -> Revision:
        target = self.registry.get(conn, self.name, self.to)
        self.target = target
        wrong = sorted(f"{k}={v}" for k, v in self.state_map.items() if v not in target.spec.states)
        if wrong:
            raise MigrationError(self.name, f"--map names states that {target.key} does not have "
                                            f"({', '.join(wrong)}; it has {', '.join(target.spec.states)})")
        states = conn.execute(sa.select(cases.c.state).distinct().where(
            cases.c.workflow == self.name, cases.c.revision != self.to, _is_open())).scalars().all()
        unplaced = sorted(s for s in states if self.state_map.get(s, s) not in target.spec.states)
        if unplaced:
            rows = conn.execute(sa.select(cases.c.number, cases.c.state).where(
                cases.c.workflow == self.name, cases.c.revision != self.to, _is_open(),
                cases.c.state.in_(unplaced)).order_by(cases.c.id).limit(1000)).all()
            raise MigrationError(self.name, f"open cases are in states that {target.key} does not have "
                                            f"({', '.join(unplaced)}); place them with --map OLD=NEW",
                                 [(r.number, r.state) for r in rows])
        return target

    def case_ids(self, conn: sa.Connection) -> list[int]:
        return list(conn.execute(sa.select(cases.c.id).where(
            cases.c.workflow == self.name, cases.c.revision != self.to, _is_open()).order_by(cases.c.id)).scalars())

    # -- planning one case ------------------------------------------------------------------
    def plan(self, conn: sa.Connection, row: Any) -> CaseMove | None:
        """The move of one case, or None when its state has no place (it changed meanwhile)."""
        target = self.target
        assert target is not None
        new_state = self.state_map.get(row.state, row.state)
        if new_state not in target.spec.states:
            return None
        source = self.registry.get(conn, self.name, row.revision)
        case = row_to_case(row, from_json(target.spec.fields, row.data))
        active = self.rules._active(conn, row.id)
        if target.spec.state(new_state).final:  # mapped to a final state: the case closes, every clock stops
            return CaseMove(row.id, row.number, row.revision, self.to, row.state, new_state, tuple(
                ClockChange(n, "stopped", active[n].due_at, None, active[n].target) for n in sorted(active)))
        changes = []
        for name in sorted(active):
            change = self._clock(conn, source, case, active[name])
            if change is not None:
                changes.append(change)
        for name, clock in target.spec.clocks.items():
            if name in active or name in source.spec.clocks or f"enter:{new_state}" not in clock.start:
                continue
            duration = self.rules.target_of(target.spec, clock, case, self.now)
            _, calendar = self.rules.calendar_for(conn, target.spec, clock, case.data)
            try:
                due: datetime | None = calendar.add(self.now, duration)
            except CalendarDataMissing:
                due = None
            changes.append(ClockChange(name, "started", None, due, str(duration)))
        return CaseMove(row.id, row.number, row.revision, self.to, row.state, new_state, tuple(changes))

    def _clock(self, conn: sa.Connection, source: Revision, case: Any, row: Any) -> ClockChange | None:
        target = self.target
        assert target is not None
        clock = target.spec.clocks.get(row.name)
        if clock is None:
            return ClockChange(row.name, "stopped", row.due_at, None, row.target)
        duration = self.rules.target_of(target.spec, clock, case, self.now)
        calendar_name, calendar = self.rules.calendar_for(conn, target.spec, clock, case.data)
        if row.due_at is None:  # awaiting calendar data: only its target can change now
            changed = duration != Duration.parse(row.target) or calendar_name != row.calendar
            return ClockChange(row.name, "recomputed", None, None, str(duration)) if changed else None
        if duration != Duration.parse(row.target) or calendar_name != row.calendar:
            return ClockChange(row.name, "recomputed", row.due_at,
                               self._recomputed(conn, row, duration, calendar), str(duration))
        old = source.spec.clocks.get(row.name)
        if old is None or old.model_dump() != clock.model_dump():
            return ClockChange(row.name, "rescheduled", row.due_at, row.due_at, str(duration))
        return None

    def _recomputed(self, conn: sa.Connection, row: Any, duration: Duration, calendar: Any) -> datetime:
        """From the clock's start with the new target, keeping what extensions and pauses added."""
        new_base = calendar.add(row.started_at, duration)
        old_calendar = self.engine.calendar_set.get(conn, row.calendar)
        old_target = Duration.parse(row.target)
        old_base = old_calendar.add(row.started_at, old_target)
        if row.due_at <= old_base:
            return new_base
        if old_target.unit == "working_days" and duration.unit == "working_days":
            days = old_calendar.closes_of_business_between(old_base, row.due_at)
            return calendar.add(new_base, Duration(days, "working_days")) if days else new_base
        if old_target.is_working_time and duration.is_working_time:
            gained = old_calendar.business_time_between(old_base, row.due_at)
            minutes = int(gained.total_seconds() // 60)
            return calendar.add(new_base, Duration(minutes, "business_minutes")) if minutes else new_base
        return new_base + (row.due_at - old_base)

    # -- applying one case ------------------------------------------------------------------
    def apply(self, conn: sa.Connection, row: Any, move: CaseMove, actor: str) -> None:
        target = self.target
        assert target is not None
        store = self.engine.store
        final = target.spec.state(move.to_state).final
        values: dict[str, Any] = {"revision": self.to, "state": move.to_state, "updated_at": self.now}
        if final:
            values["closed_at"] = self.now
        updated = store.update_case(conn, row.id, row.row_version, values)
        if updated is None:  # we hold the row lock, so only a bug could get here
            actual = conn.execute(sa.select(cases.c.row_version).where(cases.c.id == row.id)).scalar()
            raise self.engine.conflict(row.number, row.row_version, actual)
        store.add_event(conn, case_id=row.id, kind="migrated", from_state=move.from_state, to_state=move.to_state,
                        actor=actor, at=self.now, data={"from": f"{self.name}@r{move.from_revision}",
                                                        "to": target.key, "revision": target.key,
                                                        "clocks": [c.to_json() for c in move.clocks]})
        case = row_to_case(updated, from_json(target.spec.fields, updated.data))
        active = self.rules._active(conn, row.id)
        for change in move.clocks:
            if change.action == "started":
                self.rules.start(conn, target.spec, case, change.clock, target.spec.clocks[change.clock], self.now)
            elif change.action == "stopped":
                self.rules.stop(conn, case, active[change.clock], self.now, reason="migrated")
            else:
                self._retime(conn, case, active[change.clock], change)

    def _retime(self, conn: sa.Connection, case: Any, row: Any, change: ClockChange) -> None:
        target = self.target
        assert target is not None and change.target is not None
        clock = target.spec.clocks[change.clock]
        calendar_name, calendar = self.rules.calendar_for(conn, target.spec, clock, case.data)
        duration = Duration.parse(change.target)
        due = change.new_due
        if due is None:  # awaiting calendar data: its due time is computed from the new target later
            conn.execute(sla_clocks.update().where(sla_clocks.c.id == row.id)
                         .values(target=change.target, calendar=calendar_name))
            return
        breached = row.breached_at is not None and due <= self.now
        values: dict[str, Any] = {"due_at": due, "target": change.target, "calendar": calendar_name}
        if row.breached_at is not None:
            values.update(breached_at=due if breached else None,
                          escalation_level=row.escalation_level if breached else 0)
        conn.execute(sla_clocks.update().where(sla_clocks.c.id == row.id).values(**values))
        self.rules.cancel_timers(conn, row.id, self.now)
        self.engine.store.add_event(conn, case_id=case.id, kind="clock_recomputed", actor="system", at=self.now,
                                    data={"clock": row.name, "cycle": row.cycle, "target": change.target,
                                          "old_due_at": row.due_at.isoformat() if row.due_at else None,
                                          "due_at": due.isoformat(), "reason": f"migrated to {target.key}"})
        if row.status != "running":
            return  # paused: timers come back when it resumes
        if breached:
            fresh = conn.execute(sa.select(sla_clocks).where(sla_clocks.c.id == row.id)).one()
            self.rules.schedule_ladder(conn, clock, fresh, due, calendar, self.now,
                                       from_level=row.escalation_level, floor=self.now)
        else:
            self.rules.schedule(conn, target.spec, case, row.name, clock, row.id, row.started_at, due, duration,
                                calendar, self.now)


def migrate(engine: Engine, name: str, to_revision: int | str, *, state_map: Mapping[str, str] | None = None,
            dry_run: bool = False, actor: Any = "system", now: datetime | None = None,
            batch: int = 500) -> MigrationPlan:
    """Plan (``dry_run``) or run the move of every open case of ``name`` to ``to_revision``.

    Refuses with :class:`MigrationError`, before writing anything, when an open case's state is
    neither in the target revision nor mapped by ``state_map`` (``{old_state: new_state}``).
    The real run needs an actor with role ``admin`` (or ``system``); each batch of ``batch``
    cases is one transaction, each case gets a ``migrated`` history event.
    """
    from ._engine import utcnow

    if batch < 1:
        raise ValueError("batch must be at least 1")
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError(f"now={now!r} is naive; pass a timezone-aware datetime")
    to = parse_revision(name, to_revision)
    who = engine.resolve_actor(actor)
    if not dry_run and not ({"admin", "system"} & who.roles):
        raise RoleNotAllowed(who.id, f"migrate {name} cases", ["admin"])
    job = _Migration(engine, name, to, state_map or {}, now)
    reader = engine.db.execution_options(estateflow_readonly=True)  # a plain BEGIN on SQLite
    with reader.connect() as conn:
        job.check(conn)
        ids = job.case_ids(conn)
    chunks = [ids[i:i + batch] for i in range(0, len(ids), batch)]
    moves: list[CaseMove] = []
    skipped: list[tuple[str, str]] = []
    for chunk in chunks:
        with (reader.connect() if dry_run else engine.db.begin()) as conn:
            for case_id in chunk:
                row = engine.store.load(conn, case_id, for_update=not dry_run)
                if row.closed_at is not None or row.voided or row.revision == to:
                    continue  # closed or migrated meanwhile: nothing to move
                move = job.plan(conn, row)
                if move is None:
                    skipped.append((row.number, f"now in state {row.state!r}, which {name}@r{to} does not have"))
                    continue
                if not dry_run:
                    job.apply(conn, row, move, who.id)
                moves.append(move)
    return MigrationPlan(name, to, dry_run, tuple(moves), tuple(skipped), len(chunks), now)
