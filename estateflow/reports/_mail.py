"""The weekly report by mail: a ``report`` timer row per schedule, fired by tick like any timer.

Why a timer row and not an APScheduler job (TRAPS.md): the row is claimed exactly once across
daemons and survives downtime. There is one pending row per schedule; firing it mails the last
full week before *now* and inserts the next row for the following scheduled time. So after
downtime that missed one or more Mondays, the first tick sends **one** catch-up report — for the
latest full week — and the schedule carries on from there (weeks missed before that one are not
sent; run ``estateflow report weekly --week ...`` for them). The outbox key holds the schedule
and the week, so even a repeated firing cannot mail the same week twice.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..engine._expr import default_sandbox
from ..engine._notices import Notices, _digest
from ..engine._schema import outbox, timers
from ._render import render_html, render_text
from ._schedule import WeeklySchedule

if TYPE_CHECKING:
    from ..engine._engine import Engine

__all__ = ["REPORT_TEMPLATES", "ReportMailer"]

log = logging.getLogger(__name__)

# Shipped templates (first line = subject); the tables follow the text in the mail body, and the
# HTML part is the self-contained report page.
REPORT_TEMPLATES: dict[str, dict[str, str]] = {
    "weekly_report": {
        "zh": "【客服周报】{{ scope }}{{ period }}（{{ first_day }} 至 {{ last_day }}）\n"
              "{{ scope }}客服周报 {{ period }}：本周受理 {{ opened }} 件，办结 {{ closed }} 件；"
              "周末未办结 {{ open_at_end }} 件，其中超时 {{ overdue }} 件；按时率 {{ on_time_rate }}。"
              "{% if major %}重大投诉 {{ major }} 件。{% endif %}\n"
              "明细见下表（HTML 版含图表）。个人信息已脱敏。",
        "en": "[Weekly report] {{ scope }}{{ period }} ({{ first_day }} to {{ last_day }})\n"
              "Weekly report {{ scope }}{{ period }}: {{ opened }} opened, {{ closed }} closed; "
              "{{ open_at_end }} still open at the end of the week, {{ overdue }} of them overdue; "
              "on-time rate {{ on_time_rate }}.{% if major %} Major complaints: {{ major }}.{% endif %}\n"
              "Details below (the HTML version has a chart). Personal data is masked.",
    },
}
TEMPLATE_NAMES = {"scope", "period", "first_day", "last_day", "opened", "closed", "open_at_end", "overdue",
                  "on_time_rate", "major"}


class ReportMailer:
    """Keeps one pending ``report`` timer per configured schedule and fires it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._ensured: tuple[Any, ...] | None = None

    # -- configuration --------------------------------------------------------------------
    def schedules(self) -> list[WeeklySchedule] | None:
        """The configured schedules, or None when the engine has no configuration at all (a cron
        ``tick`` without ``--config``): then pending report timers are left as they are."""
        config = self.engine.config
        if config is None:
            return None
        if isinstance(config, (str, Path)):
            from ..notifiers import load_config

            config = load_config(config)
            self.engine.config = config  # parsed once; notifiers() reads the same object
        return list(getattr(config, "reports", None) or [])

    def ensure(self, now: datetime) -> None:
        """Reconcile pending report timers with the configuration (once per process and config)."""
        schedules = self.schedules()
        if schedules is None:
            return
        stamp = tuple(sorted((s.key, tuple(sorted(s.payload().items(), key=str))) for s in schedules))
        if stamp == self._ensured:
            return
        wanted = {s.key: s for s in schedules}
        with self.engine.db.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('estateflow-reports'))"))
            pending = conn.execute(sa.select(timers.c.id, timers.c.payload, timers.c.due_at).where(
                timers.c.kind == "report", timers.c.status == "pending")).all()
            seen: set[str] = set()
            for row in pending:
                key = (row.payload or {}).get("key")
                schedule = wanted.get(key)
                if schedule is None or key in seen:
                    conn.execute(timers.update().where(timers.c.id == row.id)
                                 .values(status="cancelled", fired_at=now))
                    log.info("report timer %d (%s) cancelled: no longer configured", row.id, key)
                    continue
                seen.add(key)
                if row.payload != schedule.payload():
                    old = WeeklySchedule.from_payload(row.payload)
                    values: dict[str, Any] = {"payload": schedule.payload()}
                    if (old.weekday, old.at, old.calendar, old.workflow) != \
                            (schedule.weekday, schedule.at, schedule.calendar, schedule.workflow):
                        values["due_at"] = schedule.next_after(now, self._zone(schedule))
                    conn.execute(timers.update().where(timers.c.id == row.id).values(**values))
            for key, schedule in wanted.items():
                if key not in seen:
                    self._insert(conn, schedule, schedule.next_after(now, self._zone(schedule)), now)
        self._ensured = stamp

    def _zone(self, schedule: WeeklySchedule) -> str:
        return self.engine.reports.zone(schedule.calendar, schedule.workflow)

    @staticmethod
    def _insert(conn: sa.Connection, schedule: WeeklySchedule, due: datetime, now: datetime) -> None:
        conn.execute(timers.insert().values(case_id=None, clock_id=None, kind="report", step=0, due_at=due,
                                            status="pending", attempts=0, payload=schedule.payload(),
                                            created_at=now))

    # -- firing ---------------------------------------------------------------------------
    def fire(self, conn: sa.Connection, timer: Any, now: datetime) -> None:
        """Timer handler: mail the last full week before ``now``, then schedule the next one."""
        schedule = WeeklySchedule.from_payload(dict(timer.payload or {}))
        report = self.engine.reports.weekly(
            conn=conn, community=schedule.community, department=schedule.department, workflow=schedule.workflow,
            calendar=schedule.calendar, lang=schedule.language, now=now)
        subject, summary = self.render(report, schedule.language)
        body = summary + "\n\n" + render_text(report, width=160)
        page = render_html(report)
        rows = []
        for address in self.recipients(schedule):
            rows.append({"case_id": None, "event": "report", "channel": schedule.channel, "recipient": address,
                         "language": schedule.language, "subject": subject, "body": body, "html": page,
                         "payload": {"report": "weekly", "schedule": schedule.key, "period": report.period.label},
                         "idempotency_key": f"report:{schedule.key}:{report.period.label}:{_digest(address)}"[:200],
                         "status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": None,
                         "created_at": now})
        if rows:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            conn.execute(insert(outbox).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows)
        log.info("weekly report %s for %s queued to %d recipients", schedule.key, report.period.label, len(rows))
        others = conn.execute(sa.select(timers.c.id).where(
            timers.c.kind == "report", timers.c.status == "pending", timers.c.id != timer.id,
            timers.c.payload["key"].as_string() == schedule.key)).first()
        if others is None:
            self._insert(conn, schedule, schedule.next_after(now, self._zone(schedule)), now)

    @staticmethod
    def render(report: Any, language: str) -> tuple[str, str]:
        totals = report.totals
        scope = " ".join(v for v in (report.scope.get("community"), report.scope.get("department")) if v)
        rate = totals.on_time_rate
        context = {"scope": f"{scope} " if scope else "", "period": report.period.label,
                   "first_day": report.period.first_day.isoformat(), "last_day": report.period.last_day.isoformat(),
                   "opened": totals.opened, "closed": totals.closed, "open_at_end": totals.open_at_end,
                   "overdue": totals.overdue_at_end, "major": len(report.major),
                   "on_time_rate": "—" if rate is None else f"{rate * 100:.1f}%"}
        source = REPORT_TEMPLATES["weekly_report"][language]
        rendered = default_sandbox().compile_template(source, TEMPLATE_NAMES).render(context)
        subject, _, body = rendered.partition("\n")
        return subject.strip(), body.strip()

    def recipients(self, schedule: WeeklySchedule) -> list[str]:
        """Addresses for the schedule's channel: roles through the directory (in the report's
        community), actor ids by their e-mail or phone, anything else as written."""
        directory = self.engine.directory
        found: list[str] = []
        for target in schedule.to:
            kind, _, name = target.partition(":")
            if kind == "address" and name:
                found.append(name)
            elif kind == "role" and name:
                members = directory.members(name, schedule.community, None) \
                    if directory is not None and hasattr(directory, "members") else []
                found += [Notices._address(a, a.id, schedule.channel) for a in members] or [target]
            else:
                actor = directory.get(target) if directory is not None else None
                found.append(Notices._address(actor, target, schedule.channel))
        return list(dict.fromkeys(found))
