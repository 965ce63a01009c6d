"""Moving in from the old register: cases with their own numbers, received times and states.

What an imported case gets, and why:

* its **original number** (unique; the number sequence is moved past it, so the next case
  opened in estateflow does not collide) — or a new number from its received time if the row
  has none;
* its **true received time** in ``cases.received_at``, apart from ``created_at`` (the import
  time), so SLA clocks start at the received time and a case that was already late is late at
  once; working-day deadlines come from the same :class:`ClockRules` as every other case;
* the clocks a case in its state would have on the **shortest route** from the initial state
  (a repair imported as ``awaiting_inspection`` has its repair clock, paused; a closed case has
  none — the register does not say whether it met its deadlines, so reports do not count it);
* one ``imported`` history event naming the source file and line.

Catch-up policy: a clock already past due is marked breached inside the import (history
``clock_breach`` with ``imported: true``), and the escalation steps whose time has passed are
recorded as reached (``escalation`` events, level, priority/major marks) **without a message
each**; warnings whose time has passed are dropped. Instead, one summary alert per import
lists the late cases for the CS manager and admin. Steps still in the future are scheduled as
timers and notify as usual. A mass import therefore never floods robots and inboxes with
hundreds of catch-up escalations. No actions run, no owner is notified (they were told back
then), and no hooks fire.

The import is one transaction: every row or none. ``dry_run`` runs exactly the same code and
rolls back, so its report (numbers given, cases overdue, problems) is the real run's.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ._clocks import ACTIVE, ClockRules
from ._durations import Duration
from ._fields import to_json
from ._import_rows import (ImportProblem, ImportRow, check_mapping, check_rows, known_header, norm_header,
                           plan_columns)
from ._numbers import number_key
from ._registry import Revision
from ._schema import cases, sequences, sla_clocks, timers
from ._sheet import Sheet, read_sheet, sheet_from_rows
from ._spec import WorkflowSpec
from ._store import row_to_case
from ._types import Actor, Case

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["ImportProblem", "ImportReport", "Importer", "clocks_in_state"]

log = logging.getLogger(__name__)
_ALERT_LIST = 50  # case numbers named in the summary alert


@dataclass
class ImportReport:
    """What an import did (or, with ``dry_run``, would do). ``ok`` is False when any row or
    header has a problem; then nothing was written."""

    source: str
    workflow: str
    revision: str
    dry_run: bool
    committed: bool = False
    encoding: str | None = None
    rows: int = 0
    imported: int = 0
    open: int = 0
    closed: int = 0
    overdue: list[str] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)
    sequences: dict[str, int] = field(default_factory=dict)
    problems: list[ImportProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def clocks_in_state(spec: WorkflowSpec, state: str) -> dict[str, str]:
    """Clock name → ``running`` or ``paused`` for a case that reached ``state`` by the shortest
    route from the initial state, following the same start/stop/pause/resume points as
    :meth:`ClockRules.on_change`. Final states have no clocks."""
    if spec.state(state).final:
        return {}
    route = _shortest_route(spec, state)
    status: dict[str, str] = {}
    _apply_points(spec, status, {f"enter:{spec.initial_state}"})
    for trigger, source, dest in route:
        points = {f"trigger:{trigger}"}
        if source != dest:
            points |= {f"enter:{dest}", f"leave:{source}"}
        _apply_points(spec, status, points)
    return status


def _shortest_route(spec: WorkflowSpec, target: str) -> list[tuple[str, str, str]]:
    start = spec.initial_state
    previous: dict[str, tuple[str, str, str] | None] = {start: None}
    queue = deque([start])
    while queue and target not in previous:
        here = queue.popleft()
        for t in spec.transitions:
            dest = t.dest or here
            if here in spec.sources(t) and dest not in previous:
                previous[dest] = (t.trigger, here, dest)
                queue.append(dest)
    route: list[tuple[str, str, str]] = []
    step = previous.get(target)
    while step is not None:
        route.append(step)
        step = previous[step[1]]
    return route[::-1]


def _apply_points(spec: WorkflowSpec, status: dict[str, str], points: set[str]) -> None:
    for name, clock in spec.clocks.items():
        current = status.get(name)
        if current is not None and points & set(clock.stop):
            del status[name]
            current = None
        if current == "running" and points & set(clock.pause):
            status[name] = "paused"
        elif current == "paused" and points & set(ClockRules._resume_points(clock)):
            status[name] = "running"
        if current is None and points & set(clock.start):
            status[name] = "running"


class Importer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run(self, source: str | Path | Iterable[Mapping[str, Any]], *, workflow: str, mapping: Mapping[str, str],
            state_map: Mapping[str, str], value_map: Mapping[str, Mapping[str, str]], dry_run: bool, actor: Actor,
            now: datetime, progress: Callable[[int, int], None] | None = None) -> ImportReport:
        revision = self.engine.workflows().get(None, workflow)
        spec = revision.spec
        check_mapping(spec, mapping, state_map, value_map)
        known = known_header(spec)
        if isinstance(source, (str, Path)):
            sheet = read_sheet(source, known=lambda cell: norm_header(cell) in known or cell in mapping)
        else:
            sheet = sheet_from_rows(source)
        report = ImportReport(sheet.name, workflow, revision.key, dry_run, encoding=sheet.encoding,
                              rows=len(sheet.rows))
        plan = plan_columns(spec, sheet.columns, sheet.header_line, mapping, sheet.duplicates)
        report.warnings.extend(plan.warnings)
        report.problems.extend(plan.problems)
        zone = ZoneInfo(self.engine.calendar_zone(spec))
        rows, problems, numbers = check_rows(spec, plan, sheet.rows, zone=zone, state_map=state_map, value_map=value_map,
                                    actor=actor, now=now)
        report.problems.extend(problems)
        with self.engine.db.connect() as conn:
            transaction = conn.begin()
            try:
                self._taken_numbers(conn, numbers, plan.column_of("number"), report)
                if report.problems:
                    report.problems.sort()
                    transaction.rollback()
                    return report
                self._write(conn, revision, sheet, rows, actor, now, report, progress)
                if dry_run:
                    transaction.rollback()
                else:
                    transaction.commit()
                    report.committed = True
            except BaseException:
                transaction.rollback()
                raise
        log.info("import of %s into %s: %d cases%s", sheet.name, workflow, report.imported,
                 " (dry run, rolled back)" if dry_run else "")
        return report

    @staticmethod
    def _taken_numbers(conn: sa.Connection, given: dict[str, int], column: str, report: ImportReport) -> None:
        names = list(given)
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            for number in conn.execute(sa.select(cases.c.number).where(cases.c.number.in_(chunk))).scalars():
                report.problems.append(ImportProblem(given[number], column,
                                                     f"number {number!r} is already a case in the database"))

    def _write(self, conn: sa.Connection, revision: Revision, sheet: Sheet, rows: list[ImportRow], actor: Actor,
               now: datetime, report: ImportReport, progress: Callable[[int, int], None] | None) -> None:
        spec = revision.spec
        steps, store = self.engine.steps, self.engine.store
        keys: set[str] = set()
        for row in rows:  # numbers given first, so a generated one can never take a given one
            if row.number:
                found = number_key(spec.number, row.number)
                if found is not None:
                    store.bump_number_past(conn, *found)
                    keys.add(found[0])
        late_warnings = 0
        for index, row in enumerate(rows, start=1):
            number = row.number or steps.make_number(conn, spec, row.data, row.received_at)
            if not row.number:
                report.generated.append(number)
                found = number_key(spec.number, number)
                if found is not None:
                    keys.add(found[0])
            values = steps.row_values(spec, row.data, row.state, number)
            case_id = store.insert_case(conn, dict(
                values, workflow=spec.name, revision=revision.revision, received_at=row.received_at,
                created_at=now, updated_at=now, closed_at=row.closed_at, voided=False, row_version=1,
                data=to_json(row.data)))
            store.add_event(conn, case_id=case_id, kind="imported", to_state=row.state, actor=actor.id, at=now,
                            data=to_json({"source": sheet.name, "line": row.line, "fields": row.data,
                                          "received_at": row.received_at, "closed_at": row.closed_at,
                                          "revision": revision.key}))
            report.numbers.append(number)
            if row.closed_at is None:
                report.open += 1
                case = row_to_case(store.load(conn, case_id), row.data)
                overdue, warned = self._clocks(conn, spec, case, row, now)
                late_warnings += warned
                if overdue:
                    report.overdue.append(number)
            else:
                report.closed += 1
            report.imported += 1
            if progress is not None:
                progress(index, len(rows))
        if keys:
            report.sequences = dict(conn.execute(sa.select(sequences.c.key, sequences.c.value)
                                                 .where(sequences.c.key.in_(sorted(keys)))).all())
        if report.overdue or late_warnings:
            self._alert(conn, spec, sheet, report, late_warnings, now)

    # -- clocks ---------------------------------------------------------------------------------
    def _clocks(self, conn: sa.Connection, spec: WorkflowSpec, case: Case, row: ImportRow,
                now: datetime) -> tuple[bool, int]:
        """Start the clocks of the case's state at its received time; returns (overdue, warnings dropped)."""
        rules = self.engine.clock_rules
        overdue, dropped = False, 0
        for name, status in clocks_in_state(spec, row.state).items():
            clock = spec.clocks[name]
            rules.start(conn, spec, case, name, clock, now, started_at=row.received_at)
            clock_row = conn.execute(sa.select(sla_clocks).where(
                sla_clocks.c.case_id == case.id, sla_clocks.c.name == name,
                sla_clocks.c.status.in_(ACTIVE))).one()
            if clock_row.due_at is None:  # awaiting calendar data: nothing more to decide now
                continue
            if status == "paused":
                # Paused since it was received: the time it waited does not count against it.
                conn.execute(sla_clocks.update().where(sla_clocks.c.id == clock_row.id)
                             .values(status="paused", paused_at=row.received_at))
                rules.cancel_timers(conn, clock_row.id, now)
                self._event(conn, case, "clock_pause", now, clock=name, cycle=clock_row.cycle, imported=True)
            elif clock_row.due_at <= now:
                self._breached(conn, spec, case, clock, clock_row, now)
                overdue = True
            else:
                dropped += conn.execute(timers.update().where(
                    timers.c.clock_id == clock_row.id, timers.c.kind == "warn", timers.c.status == "pending",
                    timers.c.due_at <= now).values(status="cancelled", fired_at=now)).rowcount or 0
        return overdue, dropped

    def _breached(self, conn: sa.Connection, spec: WorkflowSpec, case: Case, clock: Any, clock_row: Any,
                  now: datetime) -> None:
        """Record the breach and the ladder steps already passed, without a message each."""
        rules = self.engine.clock_rules
        rules.cancel_timers(conn, clock_row.id, now)
        due = clock_row.due_at
        self._event(conn, case, "clock_breach", now, clock=clock_row.name, cycle=clock_row.cycle,
                    due_at=due, soft=clock.soft, imported=True, notified=False)
        level = 0
        changes: dict[str, Any] = {}
        calendar = self.engine.calendar_set.get(conn, clock_row.calendar)
        steps = [] if clock.soft else clock.escalate
        for i, step in enumerate(steps):
            after = Duration.parse(step.after)
            if (calendar.add(due, after) if after.amount else due) > now:
                break
            level = i + 1
            if step.priority:
                changes["priority"] = step.priority
            if step.mark_major:
                changes["major"] = True
            self._event(conn, case, "escalation", now, clock=clock_row.name, cycle=clock_row.cycle, level=level,
                        notify=list(step.notify), imported=True, notified=False,
                        **{k: v for k, v in (("priority", step.priority), ("major", step.mark_major or None)) if v})
        conn.execute(sla_clocks.update().where(sla_clocks.c.id == clock_row.id)
                     .values(breached_at=due, escalation_level=level))
        rules.schedule_ladder(conn, clock, clock_row, due, calendar, now, from_level=level)
        if changes:
            data = dict(case.data)
            data.update({k: v for k, v in changes.items() if k in spec.fields})
            conn.execute(cases.update().where(cases.c.id == case.id).values(data=to_json(data), **changes))

    def _event(self, conn: sa.Connection, case: Case, kind: str, now: datetime, **data: Any) -> None:
        self.engine.store.add_event(conn, case_id=case.id, kind=kind, actor="system", data=to_json(data), at=now)

    def _alert(self, conn: sa.Connection, spec: WorkflowSpec, sheet: Sheet, report: ImportReport,
               late_warnings: int, now: datetime) -> None:
        """One message for the whole import instead of one per late case."""
        named = ", ".join(report.overdue[:_ALERT_LIST]) + (" …" if len(report.overdue) > _ALERT_LIST else "")
        title = spec.title.zh if spec.title else spec.name
        self.engine.notices.system_alert(
            conn, key=f"import:{spec.name}:{now.isoformat()}:{sheet.name}", now=now,
            subject=f"【导入案件已超时】{title}导入 {report.imported} 件，其中 {len(report.overdue)} 件已超时",
            body=f"从 {sheet.name} 导入的{title}案件中，{len(report.overdue)} 件在导入时已超时"
                 f"{'：' + named if named else ''}；另有 {late_warnings} 个时限已过预警点。"
                 f"超时已记录在案件历史中，逐件的超时与升级通知未发送，请统一跟进。\n"
                 f"{len(report.overdue)} of {report.imported} {spec.name} cases imported from {sheet.name} "
                 f"were already overdue; breaches are recorded, per-case catch-up notices were not sent.")
