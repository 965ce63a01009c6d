"""The register (《来电、来访登记表》, DOMAIN.md §1.1): every case received in a period.

It is a listing, not a figure: one row per case received in the period (found through the
``received_at`` index), in the order received. Columns map onto the shipped workflows' fields:
customer = ``customer_name``, phone = ``phone``, result = ``resolution`` (complaints) or the
customer's comment on the work order (repairs) or the department's feedback, callback =
``callback_rating`` with ``callback_comment``. Personal fields are masked unless the reader may
see them (see ``_mask``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..engine._schema import cases
from ._context import ReportContext
from ._labels import code_label, text
from ._period import Period
from ._tables import Chart, Column, Section

__all__ = ["RegisterReport", "RegisterRow", "build_register"]

RESULT_FIELDS = ("resolution", "customer_comment", "feedback")
MAX_CHART_DAYS = 62


@dataclass(frozen=True)
class RegisterRow:
    number: str
    received_at: datetime
    channel: str | None
    customer: str | None
    phone: str | None
    community: str | None
    unit: str | None
    summary: str | None
    department: str | None
    handler: str | None
    state: str
    result: str | None
    callback: str | None
    workflow: str

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass(frozen=True)
class RegisterReport:
    period: Period
    scope: dict[str, Any]
    lang: str
    generated_at: datetime
    masked: bool
    rows: list[RegisterRow]

    kind = "register"

    @property
    def title(self) -> str:
        return text("register", self.lang)

    def to_dict(self) -> dict[str, Any]:
        return {"report": "register", "period": self.period.to_dict(), "scope": self.scope, "lang": self.lang,
                "generated_at": self.generated_at.isoformat(), "masked": self.masked,
                "rows": [r.to_dict() for r in self.rows]}

    def sections(self) -> list[Section]:
        t = lambda key: text(key, self.lang)  # noqa: E731
        columns = [Column(t(k), "time" if k == "received" else "text") for k in (
            "number", "received", "channel", "customer", "phone", "community", "unit", "summary_text",
            "department", "handler", "state", "result", "callback")]
        rows = [[r.number, r.received_at, r.channel, r.customer, r.phone, r.community, r.unit, r.summary,
                 r.department, r.handler, r.state, r.result, r.callback] for r in self.rows]
        return [Section(f"{t('register')} {self.period.label}", columns, rows)]

    def chart(self) -> Chart | None:
        days = self.period.days()
        if not self.rows or len(days) > MAX_CHART_DAYS:
            return None
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(self.period.zone)
        counts = Counter(r.received_at.astimezone(zone).date() for r in self.rows)
        return Chart(text("opened", self.lang), [d.strftime("%m-%d") for d in days],
                     [(text("opened", self.lang), [counts.get(d, 0) for d in days])])


def _first(data: dict[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return name, value
    return None, None


def build_register(ctx: ReportContext) -> RegisterReport:
    start, end = ctx.period.start_utc, ctx.period.end_utc
    query = (sa.select(cases.c.number, cases.c.workflow, cases.c.revision, cases.c.state, cases.c.community,
                       cases.c.unit, cases.c.department, cases.c.assignee, cases.c.received_at, cases.c.data)
             .where(*ctx.scope.clauses(), cases.c.received_at >= start, cases.c.received_at < end)
             .order_by(cases.c.received_at, cases.c.id))
    rows = []
    show = ctx.masking.show
    for row in ctx.conn.execute(query):
        data: dict[str, Any] = dict(row.data or {})
        wf, rev = row.workflow, row.revision

        def field(name: str, fallback: Any = None) -> Any:
            return show(ctx.conn, wf, rev, name, data.get(name, fallback))

        result_field, result = _first(data, RESULT_FIELDS)
        rating = code_label("callback_rating", data.get("callback_rating"), ctx.lang)
        comment = data.get("callback_comment")
        callback = "；".join(str(v) for v in (rating, comment) if v not in (None, "")) or None
        rows.append(RegisterRow(
            number=row.number, received_at=row.received_at,
            channel=code_label("channel", data.get("channel"), ctx.lang),
            customer=field("customer_name"), phone=field("phone"), community=row.community,
            unit=field("unit", row.unit), summary=data.get("summary"), department=row.department,
            handler=ctx.person(row.assignee), state=ctx.state_label(wf, row.state),
            result=show(ctx.conn, wf, rev, result_field, result) if result_field else None,
            callback=callback, workflow=ctx.workflow_title(wf)))
    return RegisterReport(ctx.period, ctx.scope.to_dict(), ctx.lang, ctx.now, ctx.masking.masked, rows)

