"""The weekly report (周报, DOMAIN.md §1.5): what came in, what was closed, what is late.

Every figure is a GROUP BY in the database over rows found through an index (received,
closed, stopped or due times); Python only adds up the few hundred group rows into the
breakdowns. Definitions (also in the README):

- *opened*: received in the period; *closed*: closed in the period (voided cases never count);
- *still open* and *overdue* are as at the end of the period (or now, if it has not ended):
  open = received before it and not closed before it; overdue = a running, non-soft clock
  whose due time had passed by then;
- *on-time rate* = clock cycles stopped in the period that met their target and never breached,
  over all clock cycles stopped in the period (soft targets are shown per clock but left out of
  the per-case rates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from ..engine._errors import CalendarDataMissing
from ..engine._schema import case_events, cases, sla_clocks
from ._context import ReportContext
from ._labels import text
from ._period import Period
from ._sql import clock_met, json_text, no_index
from ._tables import Chart, Column, Section

__all__ = ["ClockFigures", "Figures", "OpenCase", "WeeklyReport", "build_weekly"]

DIMS = ("workflow", "category", "department", "assignee")
MAX_CHART_DAYS = 62


@dataclass(frozen=True)
class Figures:
    """One row of a breakdown (or the totals, with ``key`` None)."""

    key: str | None
    label: str
    opened: int = 0
    closed: int = 0
    open_at_end: int = 0
    overdue_at_end: int = 0
    clocks_stopped: int = 0
    clocks_met: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return self.clocks_met / self.clocks_stopped if self.clocks_stopped else None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "opened": self.opened, "closed": self.closed,
                "open_at_end": self.open_at_end, "overdue_at_end": self.overdue_at_end,
                "clocks_stopped": self.clocks_stopped, "clocks_met": self.clocks_met,
                "on_time_rate": self.on_time_rate}


@dataclass(frozen=True)
class ClockFigures:
    workflow: str
    workflow_title: str
    clock: str
    label: str
    soft: bool
    started: int = 0
    stopped: int = 0
    met: int = 0
    breaches: int = 0  # breach events recorded in the period
    overdue_at_end: int = 0

    @property
    def on_time_rate(self) -> float | None:
        return self.met / self.stopped if self.stopped else None

    def to_dict(self) -> dict[str, Any]:
        return {"workflow": self.workflow, "workflow_title": self.workflow_title, "clock": self.clock, "label": self.label, "soft": self.soft,
                "started": self.started, "stopped": self.stopped, "met": self.met, "breaches": self.breaches,
                "overdue_at_end": self.overdue_at_end, "on_time_rate": self.on_time_rate}


@dataclass(frozen=True)
class OpenCase:
    number: str
    workflow: str
    state: str
    community: str | None
    unit: str | None
    summary: str
    department: str | None
    handler: str | None
    received_at: datetime
    age_days: float
    next_due_at: datetime | None
    overdue: bool
    major: bool
    closed_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "workflow": self.workflow, "state": self.state, "community": self.community,
                "unit": self.unit, "summary": self.summary, "department": self.department, "handler": self.handler,
                "received_at": self.received_at.isoformat(), "age_days": round(self.age_days, 2),
                "next_due_at": self.next_due_at.isoformat() if self.next_due_at else None,
                "overdue": self.overdue, "major": self.major,
                "closed_at": self.closed_at.isoformat() if self.closed_at else None}


@dataclass(frozen=True)
class WeeklyReport:
    period: Period
    scope: dict[str, Any]
    lang: str
    generated_at: datetime
    masked: bool
    working_days: list[date] | None
    totals: Figures
    by_workflow: list[Figures]
    by_category: list[Figures]
    by_department: list[Figures]
    by_handler: list[Figures]
    by_clock: list[ClockFigures]
    per_day: list[tuple[date, int, int]]
    unresolved: list[OpenCase]
    unresolved_total: int
    major: list[OpenCase] = field(default_factory=list)

    kind = "weekly"

    @property
    def title(self) -> str:
        return text("weekly", self.lang)

    def to_dict(self) -> dict[str, Any]:
        return {"report": "weekly", "period": self.period.to_dict(), "scope": self.scope, "lang": self.lang,
                "generated_at": self.generated_at.isoformat(), "masked": self.masked,
                "working_days": [d.isoformat() for d in self.working_days] if self.working_days is not None else None,
                "totals": self.totals.to_dict(),
                "by_workflow": [f.to_dict() for f in self.by_workflow],
                "by_category": [f.to_dict() for f in self.by_category],
                "by_department": [f.to_dict() for f in self.by_department],
                "by_handler": [f.to_dict() for f in self.by_handler],
                "by_clock": [c.to_dict() for c in self.by_clock],
                "per_day": [{"day": d.isoformat(), "opened": o, "closed": c} for d, o, c in self.per_day],
                "unresolved_total": self.unresolved_total,
                "unresolved": [c.to_dict() for c in self.unresolved],
                "major": [c.to_dict() for c in self.major]}

    # -- rendering shape --------------------------------------------------------------------
    def sections(self) -> list[Section]:
        t = lambda key: text(key, self.lang)  # noqa: E731
        figure_columns = [Column(t("opened"), "int"), Column(t("closed"), "int"), Column(t("open_at_end"), "int"),
                          Column(t("overdue_at_end"), "int"), Column(t("clocks_stopped"), "int"),
                          Column(t("clocks_met"), "int"), Column(t("on_time_rate"), "rate")]

        def figures(title: str, head: str, rows: Iterable[Figures]) -> Section:
            return Section(title, [Column(head), *figure_columns],
                           [[f.label, f.opened, f.closed, f.open_at_end, f.overdue_at_end, f.clocks_stopped,
                             f.clocks_met, f.on_time_rate] for f in rows])

        total = self.totals
        summary = figures(t("summary"), t("period"), [total])
        summary.rows[0][0] = self.period.label
        if self.working_days is not None:
            summary.note = f"{t('working_days')}: {len(self.working_days)}"
        open_columns = [Column(t("number")), Column(t("workflow")), Column(t("state")), Column(t("unit")),
                        Column(t("summary_text")), Column(t("department")), Column(t("handler")),
                        Column(t("received"), "time"), Column(t("age_days"), "number"), Column(t("next_due"), "time"),
                        Column(t("overdue"))]

        def open_rows(items: Iterable[OpenCase]) -> list[list[Any]]:
            return [[c.number, c.workflow, c.state, c.unit, c.summary, c.department, c.handler, c.received_at,
                     c.age_days, c.next_due_at, t("yes") if c.overdue else ""] for c in items]

        unresolved = Section(t("unresolved"), open_columns, open_rows(self.unresolved))
        if self.unresolved_total > len(self.unresolved):
            unresolved.note = t("more").format(n=self.unresolved_total - len(self.unresolved))
        return [
            summary,
            figures(t("by_workflow"), t("workflow"), self.by_workflow),
            Section(t("by_clock"), [Column(t("workflow")), Column(t("clock")), Column(t("soft")),
                                    Column(t("started"), "int"), Column(t("stopped"), "int"), Column(t("met"), "int"),
                                    Column(t("on_time_rate"), "rate"), Column(t("breaches"), "int"),
                                    Column(t("overdue_at_end"), "int")],
                    [[c.workflow_title, c.label, t("yes") if c.soft else "", c.started, c.stopped, c.met, c.on_time_rate,
                      c.breaches, c.overdue_at_end] for c in self.by_clock]),
            figures(t("by_category"), t("category"), self.by_category),
            figures(t("by_department"), t("department"), self.by_department),
            figures(t("by_handler"), t("handler"), self.by_handler),
            unresolved,
            Section(t("major"), open_columns, open_rows(self.major)),
        ]

    def chart(self) -> Chart | None:
        if not self.per_day:
            return None
        return Chart(text("per_day", self.lang), [d.strftime("%m-%d") for d, _, _ in self.per_day],
                     [(text("opened", self.lang), [o for _, o, _ in self.per_day]),
                      (text("closed", self.lang), [c for _, _, c in self.per_day])])


# -- building --------------------------------------------------------------------------------------
class _Sums:
    """Adds group rows up per breakdown key."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, Any], dict[str, int]] = {}

    def add(self, dims: dict[str, Any], **counts: int) -> None:
        for dim in (None, *DIMS):
            key = (dim or "total", dims.get(dim) if dim else None)
            bucket = self.values.setdefault(key, {})
            for name, value in counts.items():
                bucket[name] = bucket.get(name, 0) + int(value or 0)

    def rows(self, dim: str, label: Any) -> list[Figures]:
        found = [Figures(key, label(key), **counts) for (d, key), counts in self.values.items() if d == dim]
        return sorted(found, key=lambda f: (-(f.opened + f.open_at_end), str(f.key)))

    def total(self, label: str) -> Figures:
        return Figures(None, label, **self.values.get(("total", None), {}))


def build_weekly(ctx: ReportContext, *, limit: int = 200) -> WeeklyReport:
    conn, f = ctx.conn, ctx.scope.clauses()
    start, end, cutoff = ctx.period.start_utc, ctx.period.end_utc, ctx.cutoff
    soft = ctx.soft_clocks()
    sums = _Sums()
    for row in conn.execute(_case_counts(f, start, end, cutoff)).mappings():
        sums.add(row, opened=row["o"], closed=row["c"], open_at_end=row["e"])
    clocks: dict[tuple[str, str], dict[str, int]] = {}
    for row in conn.execute(_stopped_clocks(f, start, end)).mappings():
        bucket = clocks.setdefault((row["workflow"], row["clock"]), {})
        bucket["stopped"] = bucket.get("stopped", 0) + row["stopped"]
        bucket["met"] = bucket.get("met", 0) + int(row["met"] or 0)
        if (row["workflow"], row["clock"]) not in soft:
            sums.add(row, clocks_stopped=row["stopped"], clocks_met=row["met"])
    overdue = _overdue_clocks(f, cutoff).subquery()
    for row in conn.execute(sa.select(overdue.c.workflow, overdue.c.clock, sa.func.count().label("n"))
                            .group_by(overdue.c.workflow, overdue.c.clock)).mappings():
        clocks.setdefault((row["workflow"], row["clock"]), {})["overdue_at_end"] = row["n"]
    hard = sa.true() if not soft else sa.tuple_(overdue.c.workflow, overdue.c.clock).not_in(sorted(soft))
    for row in conn.execute(sa.select(*[overdue.c[d] for d in DIMS],
                                      sa.func.count(sa.distinct(overdue.c.case_id)).label("n"))
                            .where(hard).group_by(*[overdue.c[d] for d in DIMS])).mappings():
        sums.add(row, overdue_at_end=row["n"])
    for (workflow, clock), n in _simple_counts(conn, _started_clocks(f, start, end)):
        clocks.setdefault((workflow, clock), {})["started"] = n
    for (workflow, clock), n in _simple_counts(conn, _breach_events(f, start, end)):
        clocks.setdefault((workflow, clock), {})["breaches"] = n
    by_clock = sorted((ClockFigures(w, ctx.workflow_title(w), c, ctx.clock_label(w, c), (w, c) in soft, **counts)
                       for (w, c), counts in clocks.items()), key=lambda x: (x.workflow, x.clock))
    none = text("none", ctx.lang)
    unresolved = _open_cases(ctx, _open_at(f, cutoff), limit)
    major = _open_cases(ctx, _major_ids(f, start, end, cutoff), limit)
    totals = sums.total(ctx.period.label)
    return WeeklyReport(
        period=ctx.period, scope=ctx.scope.to_dict(), lang=ctx.lang, generated_at=ctx.now,
        masked=ctx.masking.masked, working_days=_working_days(ctx), totals=totals,
        by_workflow=sums.rows("workflow", lambda k: ctx.workflow_title(k) if k else none),
        by_category=sums.rows("category", lambda k: k or none),
        by_department=sums.rows("department", lambda k: k or none),
        by_handler=sums.rows("assignee", lambda k: ctx.person(k) or none),
        by_clock=by_clock, per_day=_per_day(ctx, f),
        unresolved=unresolved, unresolved_total=totals.open_at_end, major=major)


def _dims() -> list[Any]:
    return [cases.c[d] for d in DIMS]


def _case_counts(f: list[Any], start: datetime, end: datetime, cutoff: datetime) -> Any:
    """Opened / closed / open at the end, each part found through its own index."""
    def part(o: int, c: int, e: int, *where: Any) -> Any:
        return sa.select(*_dims(), sa.literal_column(str(o)).label("o"), sa.literal_column(str(c)).label("c"),
                         sa.literal_column(str(e)).label("e")).where(*f, *where)
    received, closed = cases.c.received_at, cases.c.closed_at
    union = sa.union_all(
        part(1, 0, 0, received >= start, received < end),
        part(0, 1, 0, closed >= start, closed < end),
        part(0, 0, 1, closed.is_(None), received < cutoff),
        part(0, 0, 1, closed >= cutoff, no_index(received) < cutoff)).subquery()
    keys = [union.c[d] for d in DIMS]
    return sa.select(*keys, sa.func.sum(union.c.o).label("o"), sa.func.sum(union.c.c).label("c"),
                     sa.func.sum(union.c.e).label("e")).group_by(*keys)


def _clock_join() -> Any:
    return sla_clocks.join(cases, cases.c.id == sla_clocks.c.case_id)


def _stopped_clocks(f: list[Any], start: datetime, end: datetime) -> Any:
    k = sla_clocks
    return (sa.select(*_dims(), k.c.name.label("clock"), sa.func.count().label("stopped"),
                      sa.func.sum(clock_met(k)).label("met"))
            .select_from(_clock_join())
            .where(*f, k.c.status == "stopped", k.c.stopped_at >= start, k.c.stopped_at < end)
            .group_by(*_dims(), k.c.name))


def _overdue_clocks(f: list[Any], cutoff: datetime) -> Any:
    """Clock cycles running at ``cutoff`` whose due time had passed: one index per part."""
    k = sla_clocks

    def part(*where: Any) -> Any:
        return (sa.select(*_dims(), k.c.name.label("clock"), k.c.case_id).select_from(_clock_join())
                .where(*f, k.c.due_at < cutoff, k.c.started_at < cutoff, *where))
    def later(*where: Any) -> Any:  # through the stopped_at index, not the (status, due_at) one
        return (sa.select(*_dims(), k.c.name.label("clock"), k.c.case_id).select_from(_clock_join())
                .where(*f, no_index(k.c.due_at) < cutoff, no_index(k.c.started_at) < cutoff, *where))
    return sa.union_all(part(k.c.status == "running"),
                        part(k.c.status == "paused", k.c.paused_at >= cutoff),
                        later(no_index(k.c.status) == "stopped", k.c.stopped_at >= cutoff))


def _started_clocks(f: list[Any], start: datetime, end: datetime) -> Any:
    k = sla_clocks
    return (sa.select(cases.c.workflow.label("workflow"), k.c.name.label("clock")).select_from(_clock_join())
            .where(*f, k.c.started_at >= start, k.c.started_at < end))


def _breach_events(f: list[Any], start: datetime, end: datetime) -> Any:
    e = case_events
    return (sa.select(cases.c.workflow.label("workflow"), json_text(e.c.data, "clock").label("clock"))
            .select_from(e.join(cases, cases.c.id == e.c.case_id))
            .where(*f, e.c.kind == "clock_breach", e.c.at >= start, e.c.at < end))


def _simple_counts(conn: sa.Connection, rows: Any) -> list[tuple[tuple[str, str], int]]:
    """Count ``rows`` per (workflow, clock); grouping on a subquery, so a JSON expression is
    never repeated in GROUP BY (PostgreSQL would see two different parameters)."""
    sub = rows.subquery()
    query = sa.select(sub.c.workflow, sub.c.clock, sa.func.count()).group_by(sub.c.workflow, sub.c.clock)
    return [((w, c), n) for w, c, n in conn.execute(query) if c is not None]


def _open_at(f: list[Any], cutoff: datetime) -> Any:
    received, closed = cases.c.received_at, cases.c.closed_at
    return sa.union_all(
        sa.select(cases.c.id).where(*f, closed.is_(None), received < cutoff),
        sa.select(cases.c.id).where(*f, closed >= cutoff, no_index(received) < cutoff))


def _major_ids(f: list[Any], start: datetime, end: datetime, cutoff: datetime) -> Any:
    received, closed, major = cases.c.received_at, cases.c.closed_at, cases.c.major.is_(True)
    return sa.union(
        sa.select(cases.c.id).where(*f, major, received >= start, received < end),
        sa.select(cases.c.id).where(*f, major, closed >= start, closed < end),
        sa.select(cases.c.id).where(*f, major, closed.is_(None), received < cutoff),
        sa.select(cases.c.id).where(*f, major, closed >= cutoff, no_index(received) < cutoff))


def _open_cases(ctx: ReportContext, ids: Any, limit: int) -> list[OpenCase]:
    """The oldest ``limit`` cases among ``ids``, with their next due time as at the cutoff (any
    clock) and whether a non-soft clock was overdue then (as the overdue figures count)."""
    cutoff = ctx.cutoff
    sub = ids.subquery()
    rows = ctx.conn.execute(sa.select(cases).where(cases.c.id.in_(sa.select(sub.c.id)))
                            .order_by(cases.c.received_at, cases.c.id).limit(limit)).all()
    if not rows:
        return []
    k = sla_clocks
    soft = ctx.soft_clocks()
    workflows = {r.id: r.workflow for r in rows}
    due: dict[int, datetime] = {}
    hard_due: dict[int, datetime] = {}
    for case_id, name, due_at in ctx.conn.execute(
            sa.select(k.c.case_id, k.c.name, k.c.due_at)
            .where(k.c.case_id.in_(list(workflows)), k.c.started_at < cutoff, k.c.due_at.is_not(None),
                   sa.or_(k.c.status.in_(("running", "paused")), k.c.stopped_at >= cutoff))):
        due[case_id] = min(due.get(case_id, due_at), due_at)
        if (workflows[case_id], name) not in soft:
            hard_due[case_id] = min(hard_due.get(case_id, due_at), due_at)
    result = []
    for row in rows:
        next_due = due.get(row.id)
        unit = ctx.masking.show(ctx.conn, row.workflow, row.revision, "unit", (row.data or {}).get("unit", row.unit))
        summary = str((row.data or {}).get("summary") or "")
        result.append(OpenCase(
            number=row.number, workflow=ctx.workflow_title(row.workflow), state=ctx.state_label(row.workflow, row.state),
            community=row.community, unit=unit, summary=summary[:60] + ("…" if len(summary) > 60 else ""),
            department=row.department, handler=ctx.person(row.assignee), received_at=row.received_at,
            age_days=max((cutoff - row.received_at).total_seconds(), 0) / 86400, next_due_at=next_due,
            overdue=row.id in hard_due and hard_due[row.id] < cutoff, major=bool(row.major), closed_at=row.closed_at))
    return result


def _per_day(ctx: ReportContext, f: list[Any]) -> list[tuple[date, int, int]]:
    days = ctx.period.days()
    if len(days) > MAX_CHART_DAYS:
        return []
    zone = ctx.period.start.tzinfo
    bounds = [datetime.combine(d, datetime.min.time(), tzinfo=zone) for d in days]
    bounds.append(ctx.period.end)
    counts = []
    for column in (cases.c.received_at, cases.c.closed_at):
        buckets = [sa.func.sum(sa.case((sa.and_(column >= lo, column < hi), 1), else_=0))
                   for lo, hi in zip(bounds, bounds[1:])]
        row = ctx.conn.execute(sa.select(*buckets).where(*f, column >= bounds[0], column < bounds[-1])).one()
        counts.append([int(v or 0) for v in row])
    return [(d, counts[0][i], counts[1][i]) for i, d in enumerate(days)]


def _working_days(ctx: ReportContext) -> list[date] | None:
    try:
        calendar = ctx.engine.calendar_set.get(ctx.conn, ctx.calendar)
        return [d for d in ctx.period.days() if calendar.is_working_day(d)]
    except (CalendarDataMissing, LookupError):
        return None
