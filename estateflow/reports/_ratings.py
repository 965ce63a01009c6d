"""Ratings of repair workers and their managers (DOMAIN.md §2.6), per quarter or year.

Who is rated: the case's handler (``assignee``, the repair lead dispatched) and, for managers,
the responsible department as a whole, shown with its ``department_head`` members from the
directory. What counts: repair cases whose callback happened in the period (one *job* per case,
however many callbacks it had), read from the case's recorded fields — the callback's
``quality_score`` and ``attitude_score`` (1–5) and ``callback_rating`` — plus the customer's
signed comment on the work order: each ``reject_work`` in the period (the customer refused to
sign off at inspection) counts as rework. Ranked by the mean of quality and attitude, then by
satisfaction rate; no weighting is invented beyond that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..engine._schema import case_events, cases
from ._context import ReportContext
from ._labels import text
from ._period import Period
from ._sql import json_int, json_text
from ._tables import Chart, Column, Section

__all__ = ["Rating", "RatingsReport", "build_ratings"]

MANAGER_ROLE = "department_head"


@dataclass(frozen=True)
class Rating:
    key: str | None
    label: str
    jobs: int = 0
    quality: float | None = None
    attitude: float | None = None
    satisfied: int = 0
    basically_satisfied: int = 0
    dissatisfied: int = 0
    rework: int = 0
    managers: str | None = None

    @property
    def rated(self) -> int:
        return self.satisfied + self.basically_satisfied + self.dissatisfied

    @property
    def satisfaction_rate(self) -> float | None:
        return (self.satisfied + self.basically_satisfied) / self.rated if self.rated else None

    @property
    def score(self) -> float | None:
        marks = [v for v in (self.quality, self.attitude) if v is not None]
        return sum(marks) / len(marks) if marks else None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.update(score=self.score, satisfaction_rate=self.satisfaction_rate)
        return data


@dataclass(frozen=True)
class RatingsReport:
    period: Period
    scope: dict[str, Any]
    lang: str
    generated_at: datetime
    workers: list[Rating]
    managers: list[Rating]

    kind = "ratings"
    masked = False  # staff, not customers

    @property
    def title(self) -> str:
        return text("ratings", self.lang)

    def to_dict(self) -> dict[str, Any]:
        return {"report": "ratings", "period": self.period.to_dict(), "scope": self.scope, "lang": self.lang,
                "generated_at": self.generated_at.isoformat(), "workers": [r.to_dict() for r in self.workers],
                "managers": [r.to_dict() for r in self.managers]}

    def sections(self) -> list[Section]:
        t = lambda key: text(key, self.lang)  # noqa: E731
        figures = [Column(t("jobs"), "int"), Column(t("quality"), "number"), Column(t("attitude"), "number"),
                   Column(t("score"), "number"), Column(t("satisfied"), "int"), Column(t("basically_satisfied"), "int"),
                   Column(t("dissatisfied"), "int"), Column(t("satisfaction_rate"), "rate"), Column(t("rework"), "int")]

        def cells(r: Rating) -> list[Any]:
            return [r.jobs, r.quality, r.attitude, r.score, r.satisfied, r.basically_satisfied, r.dissatisfied,
                    r.satisfaction_rate, r.rework]
        return [
            Section(t("workers"), [Column(t("rank"), "int"), Column(t("handler")), *figures],
                    [[i, r.label, *cells(r)] for i, r in enumerate(self.workers, start=1)]),
            Section(t("managers"), [Column(t("rank"), "int"), Column(t("department")), Column(t("manager")), *figures],
                    [[i, r.label, r.managers, *cells(r)] for i, r in enumerate(self.managers, start=1)]),
        ]

    def chart(self) -> Chart | None:
        if not self.workers:
            return None
        shown = self.workers[:12]
        return Chart(text("workers", self.lang), [r.label for r in shown],
                     [(text("quality", self.lang), [r.quality or 0.0 for r in shown]),
                      (text("attitude", self.lang), [r.attitude or 0.0 for r in shown])])


def build_ratings(ctx: ReportContext) -> RatingsReport:
    start, end = ctx.period.start_utc, ctx.period.end_utc
    f = ctx.scope.clauses()
    e = case_events

    def events(trigger: str) -> Any:
        return (sa.select(e.c.case_id).select_from(e.join(cases, cases.c.id == e.c.case_id))
                .where(*f, e.c.kind == "transition", e.c.trigger == trigger, e.c.at >= start, e.c.at < end))

    jobs = events("callback").distinct().subquery()
    rating = json_text(cases.c.data, "callback_rating")

    def scores(key: Any) -> dict[Any, dict[str, Any]]:
        rows = ctx.conn.execute(
            sa.select(key.label("k"), sa.func.count().label("jobs"),
                      sa.func.avg(json_int(cases.c.data, "quality_score")).label("quality"),
                      sa.func.avg(json_int(cases.c.data, "attitude_score")).label("attitude"),
                      *[sa.func.sum(sa.case((rating == name, 1), else_=0)).label(name)
                        for name in ("satisfied", "basically_satisfied", "dissatisfied")])
            .where(cases.c.id.in_(sa.select(jobs.c.case_id))).group_by(key)).mappings().all()
        found = {r["k"]: {n: r[n] for n in ("jobs", "satisfied", "basically_satisfied", "dissatisfied")}
                 | {"quality": _float(r["quality"]), "attitude": _float(r["attitude"])} for r in rows}
        rework = events("reject_work").subquery()
        for k, n in ctx.conn.execute(sa.select(key, sa.func.count()).join(rework, rework.c.case_id == cases.c.id)
                                     .group_by(key)).all():
            found.setdefault(k, {"jobs": 0})["rework"] = int(n)
        return found

    none = text("none", ctx.lang)
    workers = [Rating(k, ctx.person(k) or none, **_counts(values)) for k, values in scores(cases.c.assignee).items()]
    managers = [Rating(k, k or none, managers=_managers(ctx, k), **_counts(values))
                for k, values in scores(cases.c.department).items()]
    return RatingsReport(ctx.period, ctx.scope.to_dict(), ctx.lang, ctx.now, _ranked(workers), _ranked(managers))


def _counts(values: dict[str, Any]) -> dict[str, Any]:
    """Counts as ints (a missing one is 0); the mean scores stay as they are (None: no score)."""
    return {n: v if n in ("quality", "attitude") else int(v or 0) for n, v in values.items()}


def _ranked(ratings: list[Rating]) -> list[Rating]:
    return sorted(ratings, key=lambda r: (-(r.score or 0), -(r.satisfaction_rate or 0), r.rework, str(r.key)))


def _float(value: Any) -> float | None:
    return None if value is None else round(float(value), 2)


def _managers(ctx: ReportContext, department: str | None) -> str | None:
    directory = ctx.engine.directory
    if department is None or directory is None or not hasattr(directory, "members"):
        return None
    people = directory.members(MANAGER_ROLE, ctx.scope.community, department)
    return "、".join(ctx.person(p.id) or p.id for p in people if department in p.departments) or None
