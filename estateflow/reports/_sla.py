"""SLA compliance: how the clock cycles started in a period fared, per workflow clock.

Each cycle is exactly one of *met* (stopped in time, never breached), *breached* (a breach
recorded — even if an extension later cleared ``breached_at`` — or stopped late, or still
running past its due time) or *running* (not stopped, not yet due). Hours to stop are real
elapsed hours from start to stop (median and p90, computed by the database). Breaches by
escalation level count each breached cycle once, at the highest ladder step its history
reached (level 0: breached but not escalated).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..engine._schema import case_events, cases, sla_clocks
from ._context import ReportContext
from ._labels import text
from ._period import Period
from ._sql import clock_met, ever_breached, json_int, json_text, percentiles, seconds_between
from ._tables import Chart, Column, Section

__all__ = ["ClockCompliance", "SlaReport", "build_sla"]


@dataclass(frozen=True)
class ClockCompliance:
    workflow: str
    workflow_title: str
    clock: str
    label: str
    soft: bool
    started: int = 0
    met: int = 0
    breached: int = 0
    running: int = 0
    stopped: int = 0
    median_hours: float | None = None
    p90_hours: float | None = None
    levels: dict[int, int] = field(default_factory=dict)

    @property
    def on_time_rate(self) -> float | None:
        decided = self.met + self.breached
        return self.met / decided if decided else None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["levels"] = {str(k): v for k, v in sorted(self.levels.items())}
        data["on_time_rate"] = self.on_time_rate
        return data


@dataclass(frozen=True)
class SlaReport:
    period: Period
    scope: dict[str, Any]
    lang: str
    generated_at: datetime
    clocks: list[ClockCompliance]

    kind = "sla"
    masked = False  # no personal data

    @property
    def title(self) -> str:
        return text("sla", self.lang)

    def to_dict(self) -> dict[str, Any]:
        return {"report": "sla", "period": self.period.to_dict(), "scope": self.scope, "lang": self.lang,
                "generated_at": self.generated_at.isoformat(), "clocks": [c.to_dict() for c in self.clocks]}

    def sections(self) -> list[Section]:
        t = lambda key: text(key, self.lang)  # noqa: E731
        main = Section(t("clocks"), [
            Column(t("workflow")), Column(t("clock")), Column(t("soft")), Column(t("started"), "int"),
            Column(t("met"), "int"), Column(t("breached"), "int"), Column(t("running"), "int"),
            Column(t("on_time_rate"), "rate"), Column(t("median_hours"), "hours"), Column(t("p90_hours"), "hours")],
            [[c.workflow_title, c.label, t("yes") if c.soft else "", c.started, c.met, c.breached, c.running,
              c.on_time_rate, c.median_hours, c.p90_hours] for c in self.clocks])
        levels = Section(t("levels"), [Column(t("workflow")), Column(t("clock")), Column(t("level"), "int"),
                                       Column(t("count"), "int")],
                         [[c.workflow_title, c.label, level, n] for c in self.clocks
                          for level, n in sorted(c.levels.items()) if n])
        return [main, levels]

    def chart(self) -> Chart | None:
        rated = [c for c in self.clocks if c.on_time_rate is not None]
        if not rated:
            return None
        return Chart(text("on_time_rate", self.lang), [c.label[:10] for c in rated],
                     [(text("on_time_rate", self.lang), [c.on_time_rate or 0.0 for c in rated])], percent=True)


def build_sla(ctx: ReportContext) -> SlaReport:
    k, conn = sla_clocks, ctx.conn
    start, end = ctx.period.start_utc, ctx.period.end_utc
    f = [*ctx.scope.clauses(), k.c.started_at >= start, k.c.started_at < end]
    joined = k.join(cases, cases.c.id == k.c.case_id)
    stopped = k.c.status == "stopped"
    breached = sa.case((sa.or_(ever_breached(k), sa.and_(~stopped, k.c.due_at <= ctx.now)), 1), else_=0)
    groups = [cases.c.workflow, k.c.name]
    counts = conn.execute(sa.select(*groups, sa.func.count(), sa.func.sum(clock_met(k)), sa.func.sum(breached),
                                    sa.func.sum(sa.case((stopped, 1), else_=0)))
                          .select_from(joined).where(*f).group_by(*groups)).all()
    hours = percentiles(conn, seconds_between(ctx.dialect, k.c.started_at, k.c.stopped_at), groups,
                        [*f, stopped, k.c.stopped_at.is_not(None)], (0.5, 0.9), joined)
    levels = _levels(ctx, f)
    soft = ctx.soft_clocks()
    result = []
    for workflow, clock, total, met, late, n_stopped in counts:
        met, late = int(met or 0), int(late or 0)
        median, p90 = hours.get((workflow, clock), [None, None])
        reached = levels.get((workflow, clock), {})
        by_level = {0: late - sum(reached.values()), **reached} if late else dict(reached)
        result.append(ClockCompliance(
            workflow=workflow, workflow_title=ctx.workflow_title(workflow), clock=clock,
            label=ctx.clock_label(workflow, clock), soft=(workflow, clock) in soft, started=int(total), met=met,
            breached=late, running=int(total) - met - late, stopped=int(n_stopped or 0),
            median_hours=None if median is None else median / 3600, p90_hours=None if p90 is None else p90 / 3600,
            levels=by_level))
    result.sort(key=lambda c: (c.workflow, c.clock))
    return SlaReport(ctx.period, ctx.scope.to_dict(), ctx.lang, ctx.now, result)


def _levels(ctx: ReportContext, f: list[Any]) -> dict[tuple[str, str], dict[int, int]]:
    """Highest escalation level each breached cycle reached, from history (extensions reset the
    clock row's own level, history keeps every step)."""
    k, e = sla_clocks, case_events
    per_cycle = (sa.select(cases.c.workflow.label("workflow"), k.c.name.label("clock"),
                           sa.func.max(json_int(e.c.data, "level")).label("level"))
                 .select_from(e.join(k, sa.and_(k.c.case_id == e.c.case_id, k.c.name == json_text(e.c.data, "clock"),
                                                k.c.cycle == json_int(e.c.data, "cycle")))
                              .join(cases, cases.c.id == k.c.case_id))
                 .where(*f, e.c.kind == "escalation", e.c.at >= ctx.period.start_utc)
                 .group_by(cases.c.workflow, k.c.name, k.c.id)).subquery()
    rows = ctx.conn.execute(sa.select(per_cycle.c.workflow, per_cycle.c.clock, per_cycle.c.level, sa.func.count())
                            .group_by(per_cycle.c.workflow, per_cycle.c.clock, per_cycle.c.level)).all()
    found: dict[tuple[str, str], dict[int, int]] = {}
    for workflow, clock, level, n in rows:
        if level is not None:
            found.setdefault((workflow, clock), {})[int(level)] = int(n)
    return found
