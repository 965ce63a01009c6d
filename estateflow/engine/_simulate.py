"""Running a scenario on a virtual clock against a throwaway database, and checking its timeline.

Why a real engine on a temporary SQLite file rather than a model of one: a simulation is only
worth trusting if it runs exactly the code that production runs — the same clock rules, timers,
escalation ladder and notices. Time moves only when the script says so; while it moves, the
engine is ticked at the due time of every pending timer in turn, so each warning, breach and
escalation happens (and is recorded) at its true time. Notifications are read from the outbox,
never delivered.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ._durations import Duration
from ._errors import EstateflowError, Problem, ScenarioError
from ._scenario import EntryPattern, Scenario, ScenarioStep
from ._schema import case_events, cases, outbox, timers
from ._types import Actor, ClockStatus

__all__ = ["Failure", "SimulationResult", "TimelineEntry", "simulate"]

log = logging.getLogger(__name__)
_MAX_TICKS = 100_000
_EVENT_NAMES = {"clock_warning": "warning", "clock_breach": "breach", "clock_extend": "extension"}


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened: a history row of a case, or a notification that would be sent."""

    at: datetime
    event: str  # opened, transition, clock_start/stop/pause/resume, warning, breach, escalation, ...
    case: str | None  # case number (None for system notices)
    alias: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        d = self.detail
        e = self.event
        if e == "opened":
            return f"opened in {d.get('to')} by {d.get('actor')} ({d.get('revision')})"
        if e == "transition":
            who = d.get("actor") + (f" for {d['on_behalf_of']}" if d.get("on_behalf_of") else "")
            return f"{d.get('trigger')}: {d.get('from')} → {d.get('to')} by {who}"
        if e == "clock_start":
            return f"clock {d.get('clock')} started: {d.get('target')}, due {_show(d.get('due'))}"
        if e == "clock_stop":
            verdict = {True: "met", False: "missed"}.get(d.get("met"), "")
            return f"clock {d.get('clock')} stopped ({d.get('reason')}){': ' + verdict if verdict else ''}"
        if e == "clock_pause":
            return f"clock {d.get('clock')} paused"
        if e == "clock_resume":
            return f"clock {d.get('clock')} resumed: due {_show(d.get('old_due'))} → {_show(d.get('due'))}"
        if e == "clock_recomputed":
            return f"clock {d.get('clock')} recomputed: due {_show(d.get('old_due'))} → {_show(d.get('due'))}"
        if e == "warning":
            return f"{d.get('clock')} due {_show(d.get('due'))} ({d.get('warn')})"
        if e == "breach":
            return f"{d.get('clock')} was due {_show(d.get('due'))}" + (" (soft target)" if d.get("soft") else "")
        if e == "escalation":
            extra = "".join(f", {k} {d[k]}" for k in ("priority", "assignee", "major") if k in d)
            return f"{d.get('clock')} level {d.get('level')} → {', '.join(d.get('notify') or []) or 'nobody'}{extra}"
        if e == "extension":
            return (f"{d.get('clock')} due {_show(d.get('old_due'))} → {_show(d.get('due'))}, "
                    f"approved by {d.get('approved_by')}")
        if e == "notification":
            return f"{d.get('notice')} via {d.get('channel')} → {d.get('recipient')}: {d.get('subject')}"
        if e == "spawn":
            return f"opened {d.get('case')} ({d.get('workflow')}) for {d.get('item')!r} by {d.get('actor')}"
        if e == "reassign":
            moves = [f"{k} {v[0]} → {v[1]}" for k in ("assignee", "department")
                     if isinstance(v := d.get(k), list) and len(v) == 2 and v[0] != v[1]]
            return f"reassigned by {d.get('actor')}: {', '.join(moves) or 'no change'}" + \
                (f" ({d['reason']})" if d.get("reason") else "")
        if e == "note":
            return f"note by {d.get('actor')}: {d.get('text')}"
        if e == "refused":
            return f"{d.get('step')} refused as expected: {d.get('error')}"
        return ", ".join(f"{k} {v}" for k, v in d.items() if v not in (None, "", [], {}))

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "event": self.event, "case": self.case, "alias": self.alias,
                "detail": {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.detail.items()},
                "text": self.text()}


@dataclass(frozen=True)
class Failure:
    """A refused step or a failed expectation, at its line in the scenario file."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass
class SimulationResult:
    scenario: Scenario
    timeline: list[TimelineEntry] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    checks: int = 0
    end: datetime | None = None
    stopped: bool = False  # a step failed and the run stopped there
    revisions: dict[str, str] = field(default_factory=dict)
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)  # alias or number -> final state

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario.title, "file": self.scenario.file, "zone": self.scenario.zone,
                "start": self.scenario.start.isoformat(), "end": self.end.isoformat() if self.end else None,
                "revisions": self.revisions, "timeline": [e.to_json() for e in self.timeline],
                "cases": self.cases, "checks": self.checks, "passed": self.passed, "stopped": self.stopped,
                "failures": [str(f) for f in self.failures]}


def simulate(scenario: Scenario, *, workflows: str | Path | Iterable[str | Path] | None = None,
             directory: Any = None, calendars: Any = None) -> SimulationResult:
    """Run ``scenario`` on a temporary SQLite database and return its timeline and verdict.

    ``workflows`` overrides the scenario's own ``workflows:`` (both default to the shipped
    ones); ``directory`` overrides its ``actors:``. Nothing outside the temporary directory is
    read or written, and nothing is delivered to any channel.
    """
    from ._engine import Engine

    location = workflows if workflows is not None else scenario.workflows
    with tempfile.TemporaryDirectory(prefix="estateflow-sim-") as tmp:
        engine = Engine(f"sqlite:///{Path(tmp) / 'simulation.db'}", location, create=True,
                        directory=directory if directory is not None else _directory(scenario),
                        calendars=calendars)
        try:
            engine.load(now=scenario.start)
            _check_names(scenario, engine)
            return _Run(engine, scenario).run()
        finally:
            engine.close()


def _directory(scenario: Scenario) -> Any:
    from ._directory import StaticDirectory, YamlDirectory

    if scenario.actors == "demo":
        from .._demo import DEMO_ACTORS

        return StaticDirectory(DEMO_ACTORS)
    if isinstance(scenario.actors, Path):
        return YamlDirectory(scenario.actors)
    return StaticDirectory(Actor(str(k), frozenset((v or {}).get("roles") or []),
                                 frozenset((v or {}).get("communities") or []),
                                 frozenset((v or {}).get("departments") or []), str((v or {}).get("name") or ""),
                                 (v or {}).get("email"), (v or {}).get("phone"))
                           for k, v in scenario.actors.items())


def _check_names(scenario: Scenario, engine: Any) -> None:
    """Workflow, trigger, clock and state names the scenario uses must exist: FILE:LINE:COL."""
    import difflib

    registry = engine.workflows()
    opened = scenario.opened_workflows()
    problems: list[Problem] = []

    def check(name: str, known: Iterable[str], what: str, line: int, column: int) -> None:
        known = sorted(known)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            problems.append(Problem(scenario.file, line, column, f"unknown {what} {name!r}",
                                    f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"))

    def spec_for(ref: str | None) -> Any:
        name = opened.get(ref or "")  # spawned children (alias.N) may be of another workflow: not checked
        return registry.spec_of(name, registry.latest(name)) if name in registry.names else None

    for step in scenario.steps:
        if step.kind == "open" and step.workflow:
            check(step.workflow, registry.names, "workflow", step.line, step.column)
        spec = spec_for(step.case)
        if spec is not None and step.kind == "fire" and step.trigger:
            check(step.trigger, {t.trigger for t in spec.transitions}, f"trigger of {spec.name}", step.line,
                  step.column)
        if spec is not None and step.kind == "extend" and step.clock:
            check(step.clock, spec.clocks, f"clock of {spec.name}", step.line, step.column)
    for expected in scenario.cases:
        spec = spec_for(expected.case)
        if spec is None:
            continue
        if "state" in expected.values:
            check(str(expected.values["state"]), spec.states, f"state of {spec.name}", *expected.where("state"))
        for clock in expected.clocks:
            check(clock.name, spec.clocks, f"clock of {spec.name}", clock.line, clock.column)
    if problems:
        raise ScenarioError(problems)


def _show(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M %a") if isinstance(value, datetime) else str(value)


class _Run:
    def __init__(self, engine: Any, scenario: Scenario) -> None:
        self.engine = engine
        self.scenario = scenario
        self.zone = ZoneInfo(scenario.zone)
        self.now = scenario.start
        self.result = SimulationResult(scenario)
        self.ids: dict[str, int] = {}  # alias -> case id
        self.alias_of: dict[int, str] = {}
        self.spawned: dict[int, int] = {}  # parent case id -> children seen
        self.last_event = 0
        self.last_outbox = 0

    # -- the script -------------------------------------------------------------------------
    def run(self) -> SimulationResult:
        result = self.result
        result.revisions = {n: f"{n}@r{self.engine.workflows().latest(n)}" for n in self.engine.workflows().names}
        if self.scenario.days_off or self.scenario.working_days:
            days = {d: False for d in self.scenario.days_off} | {d: True for d in self.scenario.working_days}
            for name in self.engine.calendar_set.names:
                self.engine.set_calendar_days(name, days, source="scenario", now=self.now)
        for step in self.scenario.steps:
            if not self.step(step):
                result.stopped = True
                break
        result.end = self.now
        if not result.stopped:
            self.check()
        result.cases = self.summaries()
        return result

    def fail(self, line: int, column: int, message: str) -> None:
        self.result.failures.append(Failure(self.scenario.file, line, column, message))

    def step(self, step: ScenarioStep) -> bool:
        target = step.at if step.at is not None else self.now
        if step.after is not None:
            try:
                target = self.add(target, step.after)
            except EstateflowError as exc:  # e.g. no calendar data for the year
                self.fail(step.line, step.column, f"{step.describe()}: {exc}")
                return False
        if target < self.now:
            self.fail(step.line, step.column, f"{step.describe()}: time cannot go back from "
                                              f"{_show(self.now.astimezone(self.zone))} to {_show(target)}")
            return False
        self.advance_to(target)
        if step.kind in ("advance", "at"):
            return True
        try:
            self.act(step)
        except (EstateflowError, ValueError) as exc:
            self.collect()
            if step.refused and (step.refused == "any" or step.refused in {c.__name__ for c in type(exc).__mro__}):
                self.result.timeline.append(TimelineEntry(self.now, "refused", self.number(step.case), step.case,
                                                          {"step": step.describe(), "error": type(exc).__name__,
                                                           "message": str(exc)}))
                return True
            self.fail(step.line, step.column, f"{step.describe()} refused: {type(exc).__name__}: {exc}")
            return False
        self.collect()
        if step.refused:
            self.fail(step.line, step.column, f"{step.describe()} should have been refused ({step.refused}) "
                                              "but it succeeded")
            return False
        return True

    def act(self, step: ScenarioStep) -> None:
        e, now, actor = self.engine, self.now, step.actor or "system"
        if step.kind == "open":
            case = e.open(step.workflow, dict(step.data), actor=actor, now=now)
            if step.alias:
                self.ids[step.alias] = case.id
                self.alias_of[case.id] = step.alias
            return
        case_id = self.case_id(step.case)
        o = step.options
        if step.kind == "fire":
            e.fire(case_id, step.trigger, actor=actor, data=dict(step.data), now=now)
        elif step.kind == "extend":
            e.extend(case_id, step.clock, actor=actor, approved_by=o.get("approved_by") or "", now=now,
                     add=str(o["add"]) if o.get("add") else None, new_due_at=o.get("due"))
        elif step.kind == "reassign":
            e.reassign(case_id, assignee=o.get("assignee"), department=o.get("department"), actor=actor,
                       reason=str(o.get("reason") or ""), now=now)
        elif step.kind == "note":
            e.note(case_id, str(o["text"]), actor=actor, now=now)
        elif step.kind == "void":
            e.void(case_id, str(o["reason"]), actor=actor, now=now)

    def case_id(self, ref: str | None) -> int | str:
        if ref in self.ids:
            return self.ids[ref]
        if ref and "." in ref and ref.split(".", 1)[0] in self.ids:
            raise LookupError(f"case {ref!r} was not spawned (yet)")
        return str(ref)

    def number(self, ref: str | None) -> str | None:
        if ref is None:
            return None
        try:
            return self.engine.get(self.case_id(ref)).number
        except (EstateflowError, LookupError):
            return None

    # -- the virtual clock ------------------------------------------------------------------
    def calendar(self) -> Any:
        names = self.engine.calendar_set.names
        with self.engine.db.execution_options(estateflow_readonly=True).connect() as conn:
            return self.engine.calendar_set.get(conn, "cn" if "cn" in names else names[0])

    def add(self, start: datetime, duration: Duration) -> datetime:
        """``N working days`` keep the wall-clock time (the same hour N working days later);
        the other units count as in workflow files."""
        calendar = self.calendar()
        if duration.unit != "working_days":
            return calendar.add(start, duration)
        local = start.astimezone(calendar.zone)
        day, left = local.date(), duration.amount
        while left:
            day += timedelta(days=1)
            left -= calendar.is_working_day(day)
        return datetime.combine(day, local.time(), tzinfo=calendar.zone)

    def advance_to(self, target: datetime) -> None:
        """Tick at the due time of every pending timer up to ``target``, in order, then stop there."""
        for _ in range(_MAX_TICKS):
            with self.engine.db.execution_options(estateflow_readonly=True).connect() as conn:
                due = conn.execute(sa.select(timers.c.due_at, timers.c.lease_until).where(
                    timers.c.status == "pending", timers.c.due_at <= target)).all()
            if not due:
                break
            at = max(self.now, min(max(d, lease or d) for d, lease in due))
            if at > target:
                break
            self.now = at
            self.engine.tick(now=at, deliver=False)
            self.collect()
        else:  # pragma: no cover - a timer that keeps re-arming itself at the same instant
            raise RuntimeError(f"simulation did not settle after {_MAX_TICKS} ticks")
        self.now = max(self.now, target)

    # -- reading what happened --------------------------------------------------------------
    def collect(self) -> None:
        with self.engine.db.execution_options(estateflow_readonly=True).connect() as conn:
            events = conn.execute(sa.select(case_events, cases.c.number).join(cases, cases.c.id == case_events.c.case_id)
                                  .where(case_events.c.id > self.last_event).order_by(case_events.c.id)).all()
            sent = conn.execute(sa.select(outbox, cases.c.number).outerjoin(cases, cases.c.id == outbox.c.case_id)
                                .where(outbox.c.id > self.last_outbox).order_by(outbox.c.id)).all()
        for row in events:
            if row.kind == "spawn" and row.case_id in self.alias_of:
                child = self.engine.get(row.data["case"])
                count = self.spawned[row.case_id] = self.spawned.get(row.case_id, 0) + 1
                alias = f"{self.alias_of[row.case_id]}.{count}"
                self.ids[alias], self.alias_of[child.id] = child.id, alias
        entries = [self.entry(row) for row in events] + [self.notification(row) for row in sent]
        entries.sort(key=lambda e: e.at)  # stable: history rows before the notices they caused
        self.result.timeline.extend(entries)
        if events:
            self.last_event = events[-1].id
        if sent:
            self.last_outbox = sent[-1].id

    def entry(self, row: Any) -> TimelineEntry:
        data = dict(row.data or {})
        detail: dict[str, Any] = {"actor": row.actor}
        if row.kind in ("opened", "transition", "force_state", "migrated"):
            detail.update({"trigger": row.trigger, "from": row.from_state, "to": row.to_state,
                           "on_behalf_of": row.on_behalf_of, "revision": data.get("revision")})
        else:
            for key, value in data.items():
                if key in ("due_at", "new_due_at"):
                    detail["due"] = self.local(value)
                elif key == "old_due_at":
                    detail["old_due"] = self.local(value)
                elif key != "cycle":
                    detail[key] = value
        return TimelineEntry(row.at, _EVENT_NAMES.get(row.kind, row.kind), row.number, self.alias_of.get(row.case_id),
                             {k: v for k, v in detail.items() if v is not None})

    def notification(self, row: Any) -> TimelineEntry:
        payload = dict(row.payload or {})
        return TimelineEntry(row.created_at, "notification", row.number, self.alias_of.get(row.case_id),
                             {"notice": row.event, "channel": row.channel, "recipient": row.recipient,
                              "subject": row.subject, "template": payload.get("template"),
                              "level": payload.get("level")})

    def local(self, value: Any) -> Any:
        if not value:
            return value
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.astimezone(self.zone)

    def summaries(self) -> dict[str, dict[str, Any]]:
        found = {}
        for alias, case_id in self.ids.items():
            case = self.engine.get(case_id)
            clocks = self.engine.clocks(case_id, now=self.now)
            found[alias] = {"number": case.number, "revision": case.workflow_revision, "state": case.state,
                            "closed": case.closed_at is not None,
                            "clocks": [_clock_json(c) for c in clocks]}
        return found

    # -- expectations -----------------------------------------------------------------------
    def check(self) -> None:
        from ._simcheck import check_cases, check_timeline

        self.result.checks += check_cases(self, self.scenario.cases)
        self.result.checks += check_timeline(self, self.scenario.timeline, self.scenario.never)

    def clocks(self, ref: str) -> list[ClockStatus]:
        return self.engine.clocks(self.case_id(ref), now=self.now)

    def matches(self, entry: TimelineEntry, pattern: EntryPattern) -> bool:
        for key, want in pattern.fields.items():
            if key == "at":
                if entry.at != want:
                    return False
            elif key == "case":
                if str(want) not in (entry.alias, entry.case):
                    return False
            elif key == "event":
                if entry.event != str(want):
                    return False
            else:
                got = entry.detail.get(key)
                if isinstance(want, datetime):
                    if got != want:
                        return False
                elif isinstance(want, bool) or isinstance(got, bool):
                    if got is not want:
                        return False
                elif str(got) != str(want):
                    return False
        return True


def _clock_json(c: ClockStatus) -> dict[str, Any]:
    return {"name": c.name, "cycle": c.cycle, "status": c.status, "target": c.target,
            "started_at": c.started_at.isoformat(), "due_at": c.due_at.isoformat() if c.due_at else None,
            "breached_at": c.breached_at.isoformat() if c.breached_at else None,
            "stopped_at": c.stopped_at.isoformat() if c.stopped_at else None,
            "escalation_level": c.escalation_level, "met": c.extra.get("met")}
